package handshake

import "runtime"

// keyThread runs every keyring operation of one agent on one OS thread.
//
// Keyrings hang off a thread's credentials, not the process's: the process
// and session keyrings a system call sees are those of the calling thread's
// struct cred, and a keyring the kernel installs lazily (a first
// KEY_SPEC_PROCESS_KEYRING or KEY_SPEC_SESSION_KEYRING with
// KEY_LOOKUP_CREATE) is committed to that thread alone (keyrings(7),
// thread-keyring(7); security/keys/process_keys.c, install_process_keyring
// and join_session_keyring). Go runs a goroutine on whichever thread is
// free, so a keyring the kernel linked into the accepting thread's process
// keyring (ACCEPT: net/handshake/tlshd.c, tls_handshake_private_keyring)
// could be out of reach of the thread that reads its keys a moment later.
// So ACCEPT, the links, the reads and the peer's key all run here
// (TestKeyringsArePerThread shows the kernel's side).
type keyThread struct {
	ch chan func()
}

// newKeyThread starts the thread. stop ends it, and with it the thread:
// it is never unlocked, so the runtime discards it and whatever keyrings
// it was given, rather than handing it to another goroutine.
func newKeyThread() *keyThread {
	k := &keyThread{ch: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range k.ch {
			f()
		}
	}()
	return k
}

// do runs f on the thread and returns when it has.
func (k *keyThread) do(f func()) {
	done := make(chan struct{})
	k.ch <- func() {
		defer close(done)
		f()
	}
	<-done
}

// stop ends the thread once the calls in flight returned.
func (k *keyThread) stop() { close(k.ch) }
