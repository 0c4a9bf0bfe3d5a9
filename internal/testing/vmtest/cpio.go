package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// archive is the content of an initramfs: a tree of directories, files,
// symbolic links and device nodes, written as a "newc" cpio archive, the
// format the kernel unpacks into its rootfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).
type archive struct {
	entries map[string]*entry // by path, without the leading slash
	trees   map[string]bool   // host directories copied whole
}

type entry struct {
	mode   uint32 // file type and permission bits, as in struct stat
	data   []byte // content of a file built in memory
	src    string // or a host file to copy
	size   int64  // of src
	target string // of a symbolic link
	rmajor uint32 // of a device node
	rminor uint32
}

// File type bits of st_mode (include/uapi/linux/stat.h).
const (
	sIFDIR  = 0o040000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	sIFCHR  = 0o020000
	sIFMT   = 0o170000
	maxLink = 40 // symbolic links followed in one path, as the kernel allows
)

func newArchive() *archive {
	return &archive{entries: map[string]*entry{}, trees: map[string]bool{}}
}

func key(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// put adds an entry and the directories above it.
func (a *archive) put(p string, e *entry) error {
	k := key(p)
	if k == "" {
		return nil
	}
	if old, ok := a.entries[k]; ok {
		if old.mode&sIFMT == sIFDIR && e.mode&sIFMT == sIFDIR {
			return nil
		}
		if old.mode&sIFMT != e.mode&sIFMT {
			return fmt.Errorf("vmtest: initramfs: %s added both as %o and as %o", p, old.mode&sIFMT, e.mode&sIFMT)
		}
	}
	for dir := path.Dir(k); dir != "."; dir = path.Dir(dir) {
		if d, ok := a.entries[dir]; ok && d.mode&sIFMT != sIFDIR {
			return fmt.Errorf("vmtest: initramfs: %s is under %s, which is not a directory", p, dir)
		}
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = &entry{mode: sIFDIR | 0o755}
		}
	}
	a.entries[k] = e
	return nil
}

func (a *archive) addDir(p string, perm uint32) error {
	return a.put(p, &entry{mode: sIFDIR | perm})
}

func (a *archive) addBytes(p string, perm uint32, data []byte) error {
	return a.put(p, &entry{mode: sIFREG | perm, data: data})
}

func (a *archive) addSymlink(p, target string) error {
	return a.put(p, &entry{mode: sIFLNK | 0o777, target: target})
}

func (a *archive) addCharDev(p string, perm, major, minor uint32) error {
	return a.put(p, &entry{mode: sIFCHR | perm, rmajor: major, rminor: minor})
}

// addFile adds the host file src at p, read when the archive is written.
func (a *archive) addFile(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("vmtest: initramfs: %s is not a regular file", src)
	}
	return a.put(p, &entry{mode: sIFREG | uint32(fi.Mode().Perm()), src: src, size: fi.Size()})
}

// addHostPath copies a host path into the archive at the same place, and
// keeps the host's symbolic links as links: every link met on the way
// (/lib -> usr/lib on a merged-/usr system, libssl.so.3 -> libssl.so.3.0.x)
// is added, and so is what it points to. A directory is copied whole.
func (a *archive) addHostPath(p string) error {
	_, err := a.addRootedPath("/", p, 0)
	return err
}

// addRootedPath copies the path p of the tree under root (the host's "/",
// or a foreign architecture's unpacked packages) to p in the archive, the
// way addHostPath does: links are kept, and an absolute link target is read
// under root, as it will be in the guest. It returns the path, under root,
// of the file or directory that p finally names.
func (a *archive) addRootedPath(root, p string, links int) (string, error) {
	if links > maxLink {
		return "", fmt.Errorf("vmtest: initramfs: too many symbolic links under %s", p)
	}
	parts := strings.Split(key(p), "/")
	cur := ""
	for i, part := range parts {
		cur += "/" + part
		src := filepath.Join(root, cur)
		fi, err := os.Lstat(src)
		if err != nil {
			return "", fmt.Errorf("vmtest: initramfs: %w", err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return "", fmt.Errorf("vmtest: initramfs: %w", err)
			}
			if err := a.addSymlink(cur, target); err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			return a.addRootedPath(root, filepath.Join(append([]string{target}, parts[i+1:]...)...), links+1)
		case fi.IsDir() && last:
			return cur, a.addRootedTree(root, cur, links)
		case fi.IsDir():
			if err := a.addDir(cur, uint32(fi.Mode().Perm())); err != nil {
				return "", err
			}
		case fi.Mode().IsRegular() && last:
			if e, ok := a.entries[key(cur)]; ok && e.src == src {
				return cur, nil
			}
			return cur, a.addFile(cur, src)
		default:
			return "", fmt.Errorf("vmtest: initramfs: %s is neither a directory, a file nor a link", src)
		}
	}
	return cur, nil
}

// addRootedTree copies the directory dir of the tree under root with
// everything under it.
func (a *archive) addRootedTree(root, dir string, links int) error {
	src := filepath.Join(root, dir)
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	if a.trees[src] {
		return nil
	}
	a.trees[src] = true
	if err := a.addDir(dir, uint32(fi.Mode().Perm())); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	for _, e := range ents {
		p := path.Join(dir, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			if _, err := a.addRootedPath(root, p, links); err != nil {
				return err
			}
		case e.IsDir():
			if err := a.addRootedTree(root, p, links); err != nil {
				return err
			}
		case e.Type().IsRegular():
			if err := a.addFile(p, filepath.Join(root, p)); err != nil {
				return err
			}
		}
	}
	return nil
}

// addTreeAt copies the regular files and directories under the host
// directory src to dst in the archive; links are followed.
func (a *archive) addTreeAt(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		if d.IsDir() {
			return a.addDir(target, 0o755)
		}
		return a.addFile(target, p)
	})
}

// addProgram copies a host program, or a shared library, with the shared
// libraries it loads and the dynamic loader, found with ldd.
func (a *archive) addProgram(p string) error {
	if err := a.addHostPath(p); err != nil {
		return err
	}
	dynamic, err := isDynamic(p)
	if err != nil || !dynamic {
		return err
	}
	out, err := output("", "ldd", p)
	if err != nil {
		return err
	}
	libs, err := parseLdd(strings.NewReader(out))
	if err != nil {
		return fmt.Errorf("vmtest: ldd %s: %w", p, err)
	}
	for _, lib := range libs {
		if err := a.addHostPath(lib); err != nil {
			return err
		}
	}
	return nil
}

// addForeignProgram copies a program or shared library of the tree under
// root (another architecture's unpacked packages) to the same path in the
// archive, with the shared libraries it needs and the dynamic loader: those
// its ELF file names (PT_INTERP, DT_NEEDED), looked up in the tree's library
// directories, and theirs in turn. ldd cannot do it: it runs the program's
// own loader, which is not the host's architecture's.
func (a *archive) addForeignProgram(root, p string, ga *guestArch) error {
	done := map[string]bool{}
	var add func(p, neededBy string) error
	add = func(p, neededBy string) error {
		real, err := a.addRootedPath(root, p, 0)
		if err != nil {
			if neededBy != "" {
				return fmt.Errorf("%w (needed by %s)", err, neededBy)
			}
			return err
		}
		if done[real] {
			return nil
		}
		done[real] = true
		interp, needed, err := elfDeps(filepath.Join(root, real), ga.elfMachine)
		if err != nil {
			return err
		}
		if interp != "" {
			if err := add(interp, p); err != nil {
				return err
			}
		}
		for _, lib := range needed {
			file, ok := findLibrary(root, lib, ga.libDirs())
			if !ok {
				return fmt.Errorf("vmtest: initramfs: %s needs %s, which is in none of %s under %s",
					p, lib, strings.Join(ga.libDirs(), ", "), root)
			}
			if err := add(file, p); err != nil {
				return err
			}
		}
		return nil
	}
	return add(p, "")
}

// elfDeps returns what an ELF file needs in order to run or load: its
// interpreter (the dynamic loader) and the sonames of its DT_NEEDED
// entries. It checks that the file is for the machine m, so that a package
// of the wrong architecture fails here rather than in the guest.
func elfDeps(file string, m elf.Machine) (interp string, needed []string, _ error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	defer f.Close()
	if f.Machine != m {
		return "", nil, fmt.Errorf("vmtest: %s is for %v, not %v", file, f.Machine, m)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", nil, fmt.Errorf("vmtest: %s: reading PT_INTERP: %w", file, err)
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: %s: %w", file, err)
	}
	return interp, needed, nil
}

// findLibrary looks a soname up in the library directories of the tree
// under root, in order, as the dynamic loader does without an ld.so.cache;
// links in the tree are followed within it. It returns the path under root.
func findLibrary(root, soname string, dirs []string) (string, bool) {
	for _, d := range dirs {
		p := path.Join(d, soname)
		if _, err := resolveIn(root, p); err == nil {
			return p, true
		}
	}
	return "", false
}

// resolveIn follows the symbolic links of the path p in the tree under
// root, reading absolute link targets under root, and returns the path
// under root of what p names.
func resolveIn(root, p string) (string, error) {
	for links := 0; links <= maxLink; links++ {
		parts := strings.Split(key(p), "/")
		cur := ""
		relinked := false
		for i, part := range parts {
			cur += "/" + part
			fi, err := os.Lstat(filepath.Join(root, cur))
			if err != nil {
				return "", err
			}
			if fi.Mode()&os.ModeSymlink == 0 {
				continue
			}
			target, err := os.Readlink(filepath.Join(root, cur))
			if err != nil {
				return "", err
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			p = path.Join(append([]string{target}, parts[i+1:]...)...)
			relinked = true
			break
		}
		if !relinked {
			return cur, nil
		}
	}
	return "", fmt.Errorf("vmtest: too many symbolic links under %s", p)
}

// isDynamic reports whether an ELF file needs the dynamic loader or shared
// libraries; ldd refuses static files.
func isDynamic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, fmt.Errorf("vmtest: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			return true, nil
		}
	}
	return false, nil
}

// parseLdd reads the output of ldd(1): the files of the libraries
// ("libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)") and of the
// loader ("/lib64/ld-linux-x86-64.so.2 (0x...)"). The vDSO has no file and is
// skipped; a library not found is an error.
func parseLdd(r io.Reader) ([]string, error) {
	var files []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line == "statically linked" {
			continue
		}
		if name, rest, ok := strings.Cut(line, "=>"); ok {
			f := strings.Fields(rest)
			switch {
			case len(f) >= 2 && f[0] == "not" && f[1] == "found":
				return nil, fmt.Errorf("library %s not found", strings.TrimSpace(name))
			case len(f) > 0 && strings.HasPrefix(f[0], "/"):
				files = append(files, f[0])
			}
			continue
		}
		if f := strings.Fields(line); strings.HasPrefix(f[0], "/") {
			files = append(files, f[0])
		}
	}
	return files, sc.Err()
}

// writeTo writes the archive in cpio newc format: every entry, parents
// before children, then the trailer.
func (a *archive) writeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	names := slices.Sorted(maps.Keys(a.entries))
	for i, name := range names {
		if err := cw.entry(uint32(i+1), name, a.entries[name]); err != nil {
			return err
		}
	}
	if err := cw.header(0, 0, 0, 0, 0, "TRAILER!!!"); err != nil {
		return err
	}
	return bw.Flush()
}

// countWriter writes cpio records and keeps the 4-byte alignment that newc
// requires after each header+name and after each file's data.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// entry writes one record: header, name, content.
func (c *countWriter) entry(ino uint32, name string, e *entry) error {
	var content io.Reader
	var size int64
	switch e.mode & sIFMT {
	case sIFREG:
		if e.src == "" {
			size, content = int64(len(e.data)), bytes.NewReader(e.data)
			break
		}
		f, err := os.Open(e.src)
		if err != nil {
			return fmt.Errorf("vmtest: initramfs: %w", err)
		}
		defer f.Close()
		size, content = e.size, io.LimitReader(f, e.size)
	case sIFLNK:
		size, content = int64(len(e.target)), strings.NewReader(e.target)
	}
	if err := c.header(ino, e.mode, size, e.rmajor, e.rminor, name); err != nil {
		return err
	}
	if content == nil {
		return nil
	}
	n, err := io.Copy(c, content)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("vmtest: initramfs: %s changed while it was copied", name)
	}
	return c.pad()
}

func (c *countWriter) pad() error {
	if r := c.n % 4; r != 0 {
		_, err := c.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

func (c *countWriter) header(ino, mode uint32, size int64, rmajor, rminor uint32, name string) error {
	nlink := uint32(1)
	if mode&sIFMT == sIFDIR {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	_, err := fmt.Fprintf(c, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0, name)
	if err != nil {
		return fmt.Errorf("vmtest: initramfs: %w", err)
	}
	return c.pad()
}

// addUnder copies every entry of the archive sub into a under the
// directory prefix. An absolute link target is moved under prefix too, so
// that the links of a tree (a foreign release's unpacked packages) stay
// inside it.
func (a *archive) addUnder(prefix string, sub *archive) error {
	for _, k := range slices.Sorted(maps.Keys(sub.entries)) {
		e := *sub.entries[k]
		if e.mode&sIFMT == sIFLNK && path.IsAbs(e.target) {
			e.target = path.Join(prefix, e.target)
		}
		if err := a.put(path.Join(prefix, k), &e); err != nil {
			return err
		}
	}
	return nil
}
