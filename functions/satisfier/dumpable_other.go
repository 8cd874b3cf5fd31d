//go:build !linux

package main

// notDumpable does nothing outside Linux, where the satisfier runs only for local development.
func notDumpable() error { return nil }
