package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotehq/lote/internal/apppkg"
	"github.com/lotehq/lote/internal/blob"
)

// appVersion is one uploaded application package version, as lote app list
// prints it.
type appVersion struct {
	Name       string     `json:"name"`
	Version    string     `json:"version"`
	SizeBytes  int64      `json:"size_bytes"`
	UploadedAt *time.Time `json:"uploaded_at,omitempty"`
	Source     string     `json:"source"`
}

func (a *app) appCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "app",
		Short: "Application packages: archives installed once per node and named by tasks with --app NAME[@VERSION]",
	}
	c.AddCommand(a.appUploadCmd(), a.appListCmd())
	return c
}

func (a *app) appUploadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "upload NAME VERSION FILE",
		Short: "Upload a .tar.gz, .tgz, .tar or .zip as version VERSION of package NAME (the newest upload is the default version)",
		Args:  cobra.ExactArgs(3),
		RunE: func(c *cobra.Command, args []string) error {
			r := apppkg.Ref{Name: args[0], Version: args[1]}
			if err := apppkg.CheckName(r.Name); err != nil {
				return usageErr("NAME: %v", err)
			}
			if err := apppkg.CheckName(r.Version); err != nil {
				return usageErr("VERSION: %v", err)
			}
			file := args[2]
			lower := strings.ToLower(file)
			if !slices.ContainsFunc([]string{".tar.gz", ".tgz", ".tar", ".zip"}, func(ext string) bool { return strings.HasSuffix(lower, ext) }) {
				return usageErr("FILE must be a .tar.gz, .tgz, .tar or .zip archive")
			}
			if _, err := os.Stat(file); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			o, err := blob.UploadFile(c.Context(), cl, file, r.Blob(), nil)
			if err != nil {
				return fmt.Errorf("uploading %s: %w", r, err)
			}
			v := appVersion{Name: r.Name, Version: r.Version, SizeBytes: o.SizeBytes, UploadedAt: o.ModifiedAt, Source: r.Blob().String()}
			return a.printApps([]appVersion{v})
		},
	}
}

func (a *app) appListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list [NAME]",
		Short: "List uploaded application packages and their versions, newest upload first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			prefix := blob.Ref{Container: blob.SystemContainer, Path: apppkg.Prefix}
			if len(args) == 1 {
				if err := apppkg.CheckName(args[0]); err != nil {
					return usageErr("NAME: %v", err)
				}
				prefix.Path = apppkg.NamePrefix(args[0])
			}
			objs, err := blob.ListAll(c.Context(), cl, prefix)
			if err != nil {
				return err
			}
			out := []appVersion{}
			for _, o := range objs {
				r, ok := apppkg.FromPath(o.Path)
				if !ok {
					continue
				}
				out = append(out, appVersion{Name: r.Name, Version: r.Version, SizeBytes: o.SizeBytes, UploadedAt: o.ModifiedAt, Source: r.Blob().String()})
			}
			slices.SortStableFunc(out, func(x, y appVersion) int {
				if c := strings.Compare(x.Name, y.Name); c != 0 {
					return c
				}
				if x.UploadedAt != nil && y.UploadedAt != nil {
					if c := y.UploadedAt.Compare(*x.UploadedAt); c != 0 {
						return c
					}
				}
				return strings.Compare(y.Version, x.Version)
			})
			return a.printApps(out)
		},
	}
}

func (a *app) printApps(vs []appVersion) error {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.Name + "@" + v.Version
	}
	return a.emit(struct {
		Apps []appVersion `json:"apps"`
	}{vs}, ids, func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tVERSION\tSIZE\tUPLOADED")
		for _, v := range vs {
			at := "-"
			if v.UploadedAt != nil {
				at = v.UploadedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", v.Name, v.Version, humanBytes(v.SizeBytes), at)
		}
	})
}
