"""Releasing a model version: the image (build, Dockerfile, infra validation, registry), and putting
it into environments (deploy, promote, rollback, render, predict) on its targets."""
