"""The ops console (issue 11): topics and consumer groups, stuck orders, order search and timeline, dead letters
and the alerts firing, served at /ops by its own process (`python -m ops.console RUN_DIR`) on 127.0.0.1:8081;
the tracking service forwards http://127.0.0.1:8080/ops to it."""
