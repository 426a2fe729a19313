module metal3-pivot/tools/crds

go 1.26.8

require (
	github.com/metal3-io/baremetal-operator v0.13.2
	github.com/metal3-io/cluster-api-provider-metal3 v1.13.2
	github.com/metal3-io/ip-address-manager v1.13.2
	sigs.k8s.io/cluster-api v1.14.2
)
