"""Stepwatch client package: generated bindings (``stepwatch.v1``) and the readers' helpers."""
