"""The recommendation service: answer chain, live scoring, events, experiments."""
