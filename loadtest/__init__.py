"""Locust load tests on the tritonize SDK, with SLA gates (see loadtest/README.md)."""
