//go:build linux

// Command nsforward forwards TCP connections accepted on a loopback address of the current
// network namespace to a loopback address inside another network namespace, the one process
// --pid lives in.
//
//	nsforward --pid PID --listen 127.0.0.1:6443 --target 127.0.0.1:6443
//
// The local cluster (hack/cluster/up.sh) runs it so that bin/cluster/kubeconfig works from the
// host as well as inside the cluster's namespaces. Both ends must be loopback addresses: packets
// only ever cross the two loopback interfaces, never towards the node's or a pod's address.
// It exits when the process holding the target namespace is gone.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

func main() {
	pid := flag.Int("pid", 0, "PID of a process in the target network namespace")
	listen := flag.String("listen", "127.0.0.1:6443", "loopback address to listen on, in this namespace")
	target := flag.String("target", "127.0.0.1:6443", "loopback address to connect to, in the target namespace")
	flag.Parse()
	log.SetPrefix("nsforward: ")
	log.Fatal(run(*pid, *listen, *target)) // run returns only on failure
}

func run(pid int, listen, target string) error {
	if pid <= 0 {
		return errors.New("--pid is required")
	}
	for _, addr := range []string{listen, target} {
		if err := requireLoopback(addr); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	dial, err := namespaceDialer(pid, target)
	if err != nil {
		return err
	}
	go exitWhenGone(pid)
	log.Printf("Forwarding %s to %s in the network namespace of PID %d", listen, target, pid)
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		go forward(c, dial)
	}
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback IP address", addr)
	}
	return nil
}

type dialResult struct {
	conn net.Conn
	err  error
}

// namespaceDialer starts a goroutine locked to an OS thread that has joined PID's network
// namespace and returns a function dialling target from there. The thread never returns to
// this namespace; the Go runtime does not reuse it for other goroutines, nor clone new threads
// from it.
func namespaceDialer(pid int, target string) (func() (net.Conn, error), error) {
	reqs := make(chan chan dialResult)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ready <- fmt.Errorf("open network namespace of PID %d: %w", pid, err)
			return
		}
		_, _, errno := syscall.RawSyscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0)
		_ = f.Close()
		if errno != 0 {
			ready <- fmt.Errorf("join network namespace of PID %d: %w", pid, errno)
			return
		}
		ready <- nil
		for reply := range reqs {
			c, err := net.DialTimeout("tcp", target, 5*time.Second)
			reply <- dialResult{c, err}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return func() (net.Conn, error) {
		reply := make(chan dialResult, 1)
		reqs <- reply
		r := <-reply
		return r.conn, r.err
	}, nil
}

func forward(c net.Conn, dial func() (net.Conn, error)) {
	defer func() { _ = c.Close() }()
	up, err := dial()
	if err != nil {
		log.Printf("Dial failed: %v", err)
		return
	}
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

func exitWhenGone(pid int) {
	for {
		time.Sleep(2 * time.Second)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			log.Printf("PID %d is gone; exiting", pid)
			os.Exit(0)
		}
	}
}
