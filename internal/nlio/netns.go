package nlio

import (
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Config returns the netlink configuration for sockets in the namespace of
// fd, as NetNS.Open returns it: -1 is the caller's own.
func Config(fd int) *netlink.Config {
	cfg := &netlink.Config{}
	if fd >= 0 {
		cfg.NetNS = fd
	}
	return cfg
}

// DialNetfilter opens a netlink socket to nfnetlink in the namespace of fd
// (-1: the caller's own).
func DialNetfilter(fd int) (*netlink.Conn, error) {
	return netlink.Dial(unix.NETLINK_NETFILTER, Config(fd))
}
