"""The pipeline stages: data, validation and drift, training (and the tracking API), evaluation,
the gate, and the run with its cache."""
