"""The management plane the lab runs as local processes, as each cluster declares it: managers, Ironic, webhooks."""
