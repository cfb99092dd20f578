"""One seam per outside system: Docker, GitHub, Kubernetes (kubectl), git, subprocesses."""
