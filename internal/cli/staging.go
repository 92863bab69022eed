package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
)

// parseInputs reads the SRC=PATH[:MODE] arguments of flag (--input,
// --start-task-input, ...). It splits at the last '=' so a URL with a query
// string stays whole, and leaves a local SRC for uploadLocalInputs.
func parseInputs(flag string, args []string) ([]api.InputFile, error) {
	var out []api.InputFile
	for _, arg := range args {
		i := strings.LastIndexByte(arg, '=')
		if i <= 0 || i == len(arg)-1 {
			return nil, usageErr("%s %q: want SRC=PATH", flag, arg)
		}
		f := api.InputFile{Source: arg[:i], Path: arg[i+1:]}
		if p, mode, ok := strings.Cut(f.Path, ":"); ok {
			if _, err := api.ParseMode(mode); err != nil {
				return nil, usageErr("%s %q: %v", flag, arg, err)
			}
			f.Path, f.Mode = p, mode
		}
		out = append(out, f)
	}
	return out, nil
}

// parseOutputs reads --output PATTERN=DEST[@success|@failure|@always].
func parseOutputs(args []string) ([]api.OutputFile, error) {
	var out []api.OutputFile
	for _, arg := range args {
		pat, dest, ok := strings.Cut(arg, "=")
		if !ok || pat == "" || dest == "" {
			return nil, usageErr("--output %q: want PATTERN=DEST[@success|@failure|@always]", arg)
		}
		f := api.OutputFile{Pattern: pat, Destination: dest}
		if i := strings.LastIndexByte(dest, '@'); i > 0 {
			switch w := dest[i+1:]; w {
			case "success", "failure", "always":
				f.Destination, f.When = dest[:i], w
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// isRemote says whether an input source is a URL (left to the server to
// validate) rather than a local file to upload.
func isRemote(src string) bool { return strings.Contains(src, "://") }

// specInputs are the input lists of specs, for uploadLocalInputs.
func specInputs(specs []api.TaskSpec) [][]api.InputFile {
	out := make([][]api.InputFile, len(specs))
	for i := range specs {
		out[i] = specs[i].Inputs
	}
	return out
}

// uploadLocalInputs uploads the inputs given with flag whose source is a
// local file to data://_lote/uploads/SHA256/NAME (content-addressed, so
// resubmitting uploads nothing new) and points them there, in place.
func (a *app) uploadLocalInputs(ctx context.Context, flag string, lists ...[]api.InputFile) error {
	done := map[string]string{}
	var cl *api.Client
	for _, list := range lists {
		for ii := range list {
			in := &list[ii]
			if isRemote(in.Source) {
				continue
			}
			if ref, ok := done[in.Source]; ok {
				in.Source = ref
				continue
			}
			st, err := os.Stat(in.Source)
			if err != nil {
				return usageErr("%s %s: not data://, http(s):// or a local file: %v", flag, in.Source, err)
			}
			if st.IsDir() {
				return usageErr("%s %s: a local folder; upload it with `lote data put` and give its data:// prefix", flag, in.Source)
			}
			sum, _, err := blob.FileSHA256(in.Source)
			if err != nil {
				return err
			}
			ref := blob.Ref{Container: blob.SystemContainer, Path: "uploads/" + sum + "/" + sanitizeName(filepath.Base(in.Source))}
			if cl == nil {
				if cl, err = a.client(); err != nil {
					return err
				}
			}
			if _, err := blob.UploadFile(ctx, cl, in.Source, ref, nil); err != nil {
				return fmt.Errorf("%s %s: %w", flag, in.Source, err)
			}
			done[in.Source] = ref.String()
			in.Source = ref.String()
		}
	}
	return nil
}

// sanitizeName keeps a file name usable as one path segment in the store.
func sanitizeName(n string) string {
	n = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\\' || r == '{' || r == '}' {
			return '_'
		}
		return r
	}, n)
	if n == "." || n == ".." || n == "" {
		return "file"
	}
	return n
}
