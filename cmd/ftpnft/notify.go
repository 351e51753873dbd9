package main

import (
	"net"
	"os"
	"strings"
)

// notifier tells systemd how the service is (sd_notify(3)): one datagram
// of "KEY=VALUE" lines to the socket that $NOTIFY_SOCKET names (a path,
// or "@name" in the abstract namespace, which Go's net package reads as
// such). Without $NOTIFY_SOCKET it sends nothing.
type notifier struct {
	addr *net.UnixAddr // nil: not run by systemd
}

func newNotifier() *notifier {
	n := &notifier{}
	if path := os.Getenv("NOTIFY_SOCKET"); path != "" {
		n.addr = &net.UnixAddr{Name: path, Net: "unixgram"}
	}
	return n
}

// send sends lines as one datagram, such as "READY=1", "STATUS=...".
func (n *notifier) send(lines ...string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(strings.Join(lines, "\n")))
	return err
}
