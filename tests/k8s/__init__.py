"""Offline checks of the deploy files: Dockerfile, Kubernetes manifests (`make k8s-validate`)."""
