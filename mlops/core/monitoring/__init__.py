"""Monitoring: drift of batches and live traffic against rows the champion never saw, the monitoring database and
its migrations, the provisioned Grafana alert rule, and the app's read models of it all."""
