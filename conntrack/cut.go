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
// it deleted; one that ended meanwhile is not an error, and one that
// cannot be deleted does not keep the others from it (the first such
// error is returned).
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
	var first error
	for _, f := range flows {
		if err := ctx.Err(); err != nil {
			return n, &Error{Op: "delete connections", Err: err}
		}
		control := f.helper != "" && in(f.orig.Src)
		data := f.related && in(f.master.Src)
		if !control && !data {
			continue
		}
		switch err := k.deleteFlow(f); {
		case err == nil:
			n++
		case errors.Is(err, syscall.ENOENT): // it ended meanwhile
		case first == nil:
			first = &Error{Op: "delete connection " + f.orig.String(), Err: err}
		}
	}
	return n, first
}
