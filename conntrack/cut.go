package conntrack

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
)

// Cut deletes from conntrack the FTP sessions of the sources in nets: their
// control connections (those a helper follows, whose original source is in
// nets) and the data connections those expected (whose master's original
// source is in nets, passive or active). The next packet of a session that
// was cut is then no longer ESTABLISHED. It returns how many connections
// it deleted; one that ended meanwhile is not an error.
func Cut(ctx context.Context, nets []netip.Prefix, opts ...Option) (int, error) {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return 0, err
	}
	defer k.close()
	flows, err := k.flows()
	if err != nil {
		return 0, &Error{Op: "list connections", Err: unsupported(err)}
	}
	in := func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range nets {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	n := 0
	for _, f := range flows {
		if err := ctx.Err(); err != nil {
			return n, &Error{Op: "delete connections", Err: err}
		}
		control := f.helper != "" && in(f.orig.Src)
		data := f.related && in(f.master.Src)
		if !control && !data {
			continue
		}
		if err := k.deleteFlow(f); err != nil && !errors.Is(err, syscall.ENOENT) {
			return n, &Error{Op: "delete connection " + f.orig.String(), Err: unsupported(err)}
		}
		n++
	}
	return n, nil
}
