// Package registry builds the child objects of a Registry. Every builder is a pure
// function of the Registry and Inputs: no client, no context, no environment reads, so each
// has a plain table test and the controller only decides what to apply.
package registry
