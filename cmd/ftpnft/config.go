package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ftpnft/ftpnft/internal/input"
)

// configKeys are the keys a --config file may hold: one for each flag that
// describes the ruleset or where it goes. The invocation flags (--dry-run,
// --force, --json, --config) are not among them: a file should not be able
// to switch off the lockout guard.
var configKeys = []string{
	"netns", "table", "role", "ports", "policy", "allow", "dnat", "masquerade",
	"related-ports", "passive-ports", "source", "source-file", "block", "block-file", "max-conn-per-source", "conn-rate",
	"state-dir", "log-format", "metrics-listen",
}

// listKeys take a YAML sequence (or one value) and repeat the flag; the
// comma-list flags (role, ports) take a sequence or a comma-separated string.
var (
	listKeys  = []string{"allow", "dnat", "masquerade", "source", "source-file", "block", "block-file"}
	commaKeys = []string{"role", "ports"}
)

// maxConfigSize bounds a config file: a few hundred bytes in practice;
// long lists of sources belong in source files.
const maxConfigSize = 1 << 20

// configValue is one key of a config file: the flag values it stands for
// and the line it is on.
type configValue struct {
	values []string
	line   int
}

// readConfig reads a YAML config file strictly: a mapping of known keys to
// scalars or sequences of scalars; an unknown or repeated key, or a value of
// the wrong shape, is an error naming the file, line and key. Relative
// source-file paths are relative to the config file.
func readConfig(path string) (map[string]configValue, error) {
	name := input.Clip(path) // for messages
	b, err := input.ReadFile(path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	// One document: a second one (after "---") would be ignored silently.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, fmt.Errorf("config %s: after the first YAML document: %w", name, err)
	case len(next.Content) > 0 && next.Content[0].Tag != "!!null":
		return nil, fmt.Errorf("config %s:%d: a second YAML document; a config file holds one", name, next.Content[0].Line)
	}
	out := map[string]configValue{}
	if len(doc.Content) == 0 {
		return out, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s:%d: want a mapping of keys such as \"ports: [21]\"", name, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		at := fmt.Sprintf("config %s:%d: key %s", name, k.Line, input.Quote(key))
		if !slices.Contains(configKeys, key) {
			return nil, fmt.Errorf("%s: unknown key (known: %s)", at, strings.Join(configKeys, ", "))
		}
		if prev, ok := out[key]; ok {
			return nil, fmt.Errorf("%s: repeats line %d", at, prev.line)
		}
		var values []string
		switch v.Kind {
		case yaml.ScalarNode:
			values = []string{v.Value}
		case yaml.SequenceNode:
			if !slices.Contains(listKeys, key) && !slices.Contains(commaKeys, key) {
				return nil, fmt.Errorf("%s: takes one value, not a list", at)
			}
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config %s:%d: key %s: list items must be plain values", name, item.Line, input.Quote(key))
				}
				values = append(values, item.Value)
			}
			if slices.Contains(commaKeys, key) {
				values = []string{strings.Join(values, ",")}
			}
		default:
			return nil, fmt.Errorf("%s: want a value or a list of values", at)
		}
		if key == "source-file" || key == "block-file" {
			for j, f := range values {
				if !filepath.IsAbs(f) {
					values[j] = filepath.Join(filepath.Dir(path), f)
				}
			}
		}
		out[key] = configValue{values: values, line: k.Line}
	}
	return out, nil
}

// applyConfig sets the flags of fs from the config file at path, except
// those given on the command line: flags override the file (a list flag on
// the command line replaces the file's list). Keys that fs does not have
// (ports for uninstall) are ignored. It returns, for each flag it set,
// where in the file the value came from ("config FILE:LINE: key KEY"), for
// errors about the value.
func applyConfig(fs *flag.FlagSet, path string) (map[string]string, error) {
	cfg, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	from := map[string]string{}
	for _, key := range configKeys {
		v, ok := cfg[key]
		if !ok || given[key] || fs.Lookup(key) == nil {
			continue
		}
		from[key] = fmt.Sprintf("config %s:%d: key %s", input.Clip(path), v.line, input.Quote(key))
		for _, value := range v.values {
			if err := fs.Set(key, value); err != nil {
				return nil, fmt.Errorf("%s: invalid value %s: %v", from[key], input.Quote(value), err)
			}
		}
	}
	return from, nil
}
