// Package conntrack will read the kernel's conntrack expectations and the
// data connections they admit (github.com/ti-mo/conntrack), to confirm that
// the FTP helper relates data connections. It is built by issue 3 and holds
// no code yet.
package conntrack
