// Package input is how ftpnft takes what its user gives it: files read in
// one bounded way ([ReadFile]: regular files only, never more than a stated
// size, never blocking on a FIFO) and bad values quoted in error messages
// without repeating a whole megabyte back ([Quote]). nft's source files and
// the command's config file both go through it.
package input
