package cli

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
)

// `lote data` moves files between this machine and the data store through
// the server; nothing is held whole in memory and every transfer is
// checked against its SHA-256.

func (a *app) dataCmd() *cobra.Command {
	c := &cobra.Command{Use: "data", Short: "Move files to and from the data store (data://CONTAINER/PATH)"}
	c.AddCommand(a.dataPutCmd(), a.dataGetCmd(), a.dataLsCmd(), a.dataRmCmd())
	return c
}

// transferParallelism is how many files move at once in a folder transfer.
const transferParallelism = 4

func parseDataRef(s string) (blob.Ref, error) {
	r, err := blob.ParseRef(s)
	if err != nil {
		return r, usageErr("%v", err)
	}
	return r, nil
}

// byteProgress shows bytes moved on a terminal, for transfers worth it.
type byteProgress struct {
	a     *app
	total int64
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (a *app) newByteProgress(total int64) *byteProgress {
	p := &byteProgress{a: a, total: total, stop: make(chan struct{})}
	if !isTTY(a.stderr) || total < 8<<20 {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				fmt.Fprintln(a.stderr)
				return
			case <-t.C:
			}
			d := p.done.Load()
			rate := float64(d) / time.Since(start).Seconds()
			fill := int(d * 30 / max(p.total, 1))
			fmt.Fprintf(a.stderr, "\r[%s%s] %s / %s  %s/s   ", strings.Repeat("#", fill), strings.Repeat(".", 30-min(fill, 30)),
				humanBytes(d), humanBytes(p.total), humanBytes(int64(rate)))
		}
	}()
	return p
}

func (p *byteProgress) add(n int64) { p.done.Add(n) }

func (p *byteProgress) finish() {
	close(p.stop)
	p.wg.Wait()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parallel runs fn over items with a few workers and returns the first error.
func parallel[T any](items []T, fn func(T) error) error {
	var (
		mu    sync.Mutex
		first error
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	for range min(transferParallelism, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				if err := fn(items[i]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func (a *app) dataPutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "put LOCAL data://CONTAINER/PATH",
		Short: "Upload a file, or a folder's contents recursively (put ./in data://inputs/ makes data://inputs/a.txt from ./in/a.txt)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			dst, err := parseDataRef(args[1])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			objs, err := putLocal(c.Context(), a, cl, args[0], dst)
			if err != nil {
				return err
			}
			return a.printDataObjects(api.DataList{Version: api.Version, Objects: objs})
		},
	}
}

type upload struct {
	local string
	ref   blob.Ref
	size  int64
}

// putLocal uploads a file or a folder tree under dst.
func putLocal(ctx context.Context, a *app, cl *api.Client, local string, dst blob.Ref) ([]api.DataObject, error) {
	st, err := os.Stat(local)
	if err != nil {
		return nil, err
	}
	var ups []upload
	if !st.IsDir() {
		ref := dst
		if ref.IsPrefix() {
			ref.Path += filepath.Base(local)
		}
		ups = append(ups, upload{local, ref, st.Size()})
	} else {
		prefix := dst.Path
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(local, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if err := blob.CheckPath(rel); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			ups = append(ups, upload{p, blob.Ref{Container: dst.Container, Path: prefix + rel}, info.Size()})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var total int64
	for _, u := range ups {
		total += u.size
	}
	prog := a.newByteProgress(total)
	objs := make([]api.DataObject, len(ups))
	idx := make([]int, len(ups))
	for i := range idx {
		idx[i] = i
	}
	err = parallel(idx, func(i int) error {
		o, err := blob.UploadFile(ctx, cl, ups[i].local, ups[i].ref, prog.add)
		objs[i] = o
		return err
	})
	prog.finish()
	return objs, err
}

func (a *app) dataGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get data://CONTAINER/PATH LOCAL",
		Short: "Download a file, or everything under a prefix ending in / into the folder LOCAL (keeping relative paths)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			src, err := parseDataRef(args[0])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx, local := c.Context(), args[1]
			if !src.IsPrefix() {
				dst := local
				if st, err := os.Stat(local); err == nil && st.IsDir() || strings.HasSuffix(local, "/") {
					os.MkdirAll(local, 0o755)
					dst = filepath.Join(local, path.Base(src.Path))
				}
				rd, err := cl.GetData(ctx, src.Container, src.Path, true)
				if err != nil {
					return err
				}
				prog := a.newByteProgress(rd.Size)
				_, err = blob.DownloadFile(ctx, cl, src, dst, 0, prog.add)
				prog.finish()
				if err != nil {
					return err
				}
				return a.printDataObjects(api.DataList{Version: api.Version, Objects: []api.DataObject{{Container: src.Container, Path: src.Path, SizeBytes: rd.Size}}})
			}
			objs, err := blob.ListAll(ctx, cl, src)
			if err != nil {
				return err
			}
			var total int64
			for _, o := range objs {
				total += o.SizeBytes
				rel := strings.TrimPrefix(o.Path, src.Path)
				if err := blob.CheckPath(rel); err != nil {
					return fmt.Errorf("refusing %s: %w", o.Path, err)
				}
			}
			root, err := filepath.Abs(local)
			if err != nil {
				return err
			}
			prog := a.newByteProgress(total)
			err = parallel(objs, func(o api.DataObject) error {
				dst := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(o.Path, src.Path)))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				_, err := blob.DownloadFile(ctx, cl, blob.Ref{Container: o.Container, Path: o.Path}, dst, 0, prog.add)
				return err
			})
			prog.finish()
			if err != nil {
				return err
			}
			return a.printDataObjects(api.DataList{Version: api.Version, Objects: objs})
		},
	}
}

func (a *app) dataLsCmd() *cobra.Command {
	var recursive bool
	c := &cobra.Command{
		Use:   "ls [data://CONTAINER/[PREFIX]]",
		Short: "List containers, or objects under a prefix",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				l, err := cl.DataContainers(c.Context())
				if err != nil {
					return err
				}
				return a.printDataObjects(l)
			}
			ref, err := parseDataRef(args[0])
			if err != nil {
				return err
			}
			out := api.DataList{Version: api.Version, Objects: []api.DataObject{}}
			tok := ""
			for {
				page, err := cl.ListData(c.Context(), ref.Container, ref.Path, !recursive, tok)
				if err != nil {
					return err
				}
				out.Objects = append(out.Objects, page.Objects...)
				if tok = page.NextPageToken; tok == "" {
					break
				}
			}
			return a.printDataObjects(out)
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "list everything under the prefix, not one level")
	return c
}

func (a *app) dataRmCmd() *cobra.Command {
	var recursive bool
	c := &cobra.Command{
		Use:   "rm data://CONTAINER/PATH…",
		Short: "Delete objects (a prefix ending in / with -r)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			var gone []api.DataObject
			for _, arg := range args {
				ref, err := parseDataRef(arg)
				if err != nil {
					return err
				}
				objs := []api.DataObject{{Container: ref.Container, Path: ref.Path}}
				if ref.IsPrefix() {
					if !recursive {
						return usageErr("%s is a prefix: give -r to delete everything under it", arg)
					}
					if objs, err = blob.ListAll(c.Context(), cl, ref); err != nil {
						return err
					}
				}
				err = parallel(objs, func(o api.DataObject) error {
					err := cl.DeleteData(c.Context(), o.Container, o.Path)
					if api.IsStatus(err, 404) && ref.IsPrefix() {
						return nil
					}
					return err
				})
				if err != nil {
					return err
				}
				gone = append(gone, objs...)
			}
			return a.printDataObjects(api.DataList{Version: api.Version, Objects: gone})
		},
	}
	c.Flags().BoolVarP(&recursive, "recursive", "r", false, "delete everything under a prefix")
	return c
}

func (a *app) printDataObjects(l api.DataList) error {
	if l.Objects == nil {
		l.Objects = []api.DataObject{}
	}
	names := make([]string, len(l.Objects))
	for i, o := range l.Objects {
		names[i] = blob.Scheme + o.Container + "/" + o.Path
	}
	return a.emit(l, names, func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tSIZE")
		for i, o := range l.Objects {
			size := humanBytes(o.SizeBytes)
			if o.Dir {
				size = "-"
			}
			fmt.Fprintf(w, "%s\t%s\n", names[i], size)
		}
	})
}
