package netns

import (
	"errors"
	"fmt"
	"os"

	"github.com/ftpnft/ftpnft/internal/input"

	"golang.org/x/sys/unix"
)

// ErrNotNetNS reports a path that exists but is not a network namespace: a
// plain file, a FIFO, or another kind of namespace (/proc/PID/ns/mnt).
var ErrNotNetNS = errors.New("not a network namespace")

// Open opens the network namespace at path, such as /var/run/netns/NAME
// or /proc/PID/ns/net, for netlink sockets to be created in it. An empty
// path is an error, never the caller's own namespace: a script's unset
// variable must not turn into the host. The file is opened without
// blocking, so a FIFO cannot hang the caller, and it must be a namespace
// file (nsfs) of a network namespace, or the error wraps [ErrNotNetNS]. A
// missing path wraps os.ErrNotExist.
func Open(path string) (*os.File, error) {
	if path == "" {
		return nil, fmt.Errorf("network namespace path is empty (name a namespace; the caller's own needs no path)")
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("network namespace %s does not exist: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		f.Close()
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		kind := "unknown"
		if st, err := f.Stat(); err == nil {
			kind = input.Kind(st.Mode())
		}
		f.Close()
		return nil, fmt.Errorf("%w: %s is %s", ErrNotNetNS, path, kind)
	}
	if kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || kind != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("%w: %s is another kind of namespace", ErrNotNetNS, path)
	}
	return f, nil
}

// NetNS says where a package's netlink sockets go: the caller's own network
// namespace (the zero value), a path (Path, with HasPath even when empty, so
// that an empty path is refused rather than taken for the caller's) or an
// open file descriptor that the caller owns (Fd, with HasFd). nft and
// conntrack keep their namespace options in one.
type NetNS struct {
	Path    string
	HasPath bool
	Fd      int
	HasFd   bool
}

// Open returns the file descriptor of the namespace for netlink.Config's
// NetNS, -1 for the caller's own, and a function that releases what Open
// opened. Of a path, it also returns the file (nil otherwise), whose inode
// tells whether the path still names the namespace later.
func (n NetNS) Open() (fd int, file *os.File, release func(), err error) {
	switch {
	case n.HasPath:
		f, err := Open(n.Path)
		if err != nil {
			return -1, nil, nil, err
		}
		return int(f.Fd()), f, func() { f.Close() }, nil
	case n.HasFd:
		return n.Fd, nil, func() {}, nil
	}
	return -1, nil, func() {}, nil
}
