"""Metrics with confidence intervals, cross-validation, tables and plots."""
