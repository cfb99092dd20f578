"""Watching deployed models: read the prediction log back, join labels that came later, judge.

    logread     the prediction log, streamed line by line (never loaded whole)
    window      the time window a monitoring looks at
    profile     what one model version met in a window: counts, bins, joined labels
    baseline    a version's predictions on its held-out rows, recorded at evaluation
    performance realised metrics with confidence intervals, and the confidence-based estimate
    scrape      traffic and latency from the servers' /metrics
    monitor     the stage: profiles -> findings per version -> the store
    labels      ground truth files: checked, joined to logged predictions, recorded
    report      a breach -> one GitHub issue per pipeline and environment, a retraining dispatch
"""
