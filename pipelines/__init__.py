"""Kubeflow pipelines assembled from the step components: training (and monitoring)."""
