// Package conntrack reads the kernel's conntrack expectations and the data
// connections they admit, to confirm that the FTP helper relates data
// connections. It exposes types of its own: [Expectation], [Related] and
// [Event], with netip addresses and stable JSON field names.
//
// Expectation messages, from dumps and from events, are read and decoded by
// this package itself, in 64 KiB reads, straight into [Expectation], and
// encoded to JSON without reflection ([WriteJSON]). Connections (the data
// connections of "related" events, and a master's helper) are decoded by
// github.com/ti-mo/conntrack, and only they: of the other new connections
// that a watch hears of, only the helper and status attributes are read. Its generic decoder cost more than the
// kernel's own dump: listing 4,000 expectations took 38 ms with it, 12 ms
// now, of which the kernel takes 10 (docs/BENCHMARKS.md).
//
// [List] returns the live expectations of a namespace (and [WriteJSON]
// writes them as they arrive). [Watch] streams
// events until its context ends: "new" and "destroy" for expectations, and
// "related" when a data connection is admitted as an expected connection,
// so a caller can follow control connection -> expectation -> data
// connection.
//
// # Lost events
//
// The kernel drops multicast events when a listener's socket buffer is full
// and tells the listener with ENOBUFS. Watch does not end then: it opens a
// new socket, lists the expectations again to resynchronise, reports the
// differences as "new" and "destroy" events, and reports a "lost" event that
// says that events were missed and how many of the differences it could
// account for. Related events in the gap cannot be recovered.
//
// # Namespaces
//
// [WithNetNS] and [WithNetNSFd] work in another network namespace: the
// netlink sockets are created there, the calling thread never moves. When a
// watched namespace's path disappears (ip netns del), Watch ends with an
// error wrapping [ErrNetNSGone].
//
// # Errors
//
// Errors are *[Error] (the operation, and the cause) and wrap their cause,
// so callers can test them with errors.Is (context.Canceled too, when ctx
// ended a dump):
// os.ErrPermission without CAP_NET_ADMIN, os.ErrNotExist for a namespace
// path that does not exist, errors.ErrUnsupported when [List] or [Watch]
// (which lists first) finds a kernel without conntrack's netlink interface,
// and [ErrNetNSGone] for a watched namespace that was deleted.
package conntrack
