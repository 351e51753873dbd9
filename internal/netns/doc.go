// Package netns opens network namespaces for ftpnft's packages, one way:
// never the caller's own for an empty path, never blocking on a FIFO, and
// only a namespace file of a network namespace. It needs no netlink: helper
// uses it as well as nft and conntrack.
package netns
