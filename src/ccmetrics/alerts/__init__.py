"""Budgets and alerts: rules read from a file, evaluated inside ``ccmetrics serve`` on the store's exact
numbers, their state kept in ``alerts.db``, notifications sent through Apprise; the same rules rendered for
Prometheus and Alertmanager by ``ccmetrics stack init --alerts``."""
