"""Stepwatch orchestrator: runs jobs, persists every status change, streams it over gRPC."""
