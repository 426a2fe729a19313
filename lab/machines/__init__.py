"""The machines, the lab's one stand-in: fake Redfish BMCs, the image server, the OS of a provisioned host."""
