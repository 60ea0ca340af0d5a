// Package e2e holds tests that start real kvd processes (built once per test
// run in TestMain) on loopback, kill them with SIGKILL and restart them with
// the same command line. Container tests (Docker) live here too.
package e2e
