"""The live management plane: the real Metal3 / Cluster API controllers run as local processes against lab clusters."""
