"""The live management plane the lab runs as local processes: Ironic, the BMCs, the managers."""
