"""Locust load tests of the service, and the script that runs them headless."""
