// Package config owns eddy's configuration: the TOML schema of DESIGN.md, its
// embedded defaults, and validation.
//
// Loading is strict and all-or-nothing: an unknown key, a value of the wrong
// type or a value out of range is refused with the key's dotted name and its
// line in the file, and no part of a refused file is applied.
package config
