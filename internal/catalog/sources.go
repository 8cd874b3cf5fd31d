package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stackseam/stackseam/internal/executor/kinds"
	"github.com/stackseam/stackseam/internal/machine"
)

// NewDir returns a catalog of the machine files directly inside dir
// (every <name>.yml or <name>.yaml; sub-folders and dot-files are skipped). A
// file is read again when its modification time or size changes.
func NewDir(dir string, opts Options) *Catalog {
	return newCatalog(dirSource{dir: dir}, opts)
}

// NewS3 returns a catalog of the machine files in bucket under prefix:
// each object <prefix><name>.yml or <prefix><name>.yaml is a machine (objects
// in deeper "folders" are not). prefix is a folder such as "machines/"; a
// missing trailing slash is added, and "" means the bucket's top level. An
// object is downloaded again when its ETag changes.
func NewS3(client *s3.Client, bucket, prefix string, opts Options) *Catalog {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return newCatalog(&s3Source{client: client, bucket: bucket, prefix: prefix}, opts)
}

// ParseFile reads and validates the machine file at path; the machine is
// named after the file. Errors reading the file are returned as they are; a
// file that breaks the rules gives a *machine.ValidationError.
func ParseFile(path string) (*machine.Machine, error) {
	name, ok := machine.NameFromFile(path)
	if !ok {
		return nil, fmt.Errorf("error reading machine file %s: the name must end in .yml or .yaml", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("error reading machine file: %w", err)
	}
	return machine.Parse(name, path, data, kinds.All)
}

type dirSource struct {
	dir string
}

func (d dirSource) String() string { return d.dir }

func (d dirSource) list(_ context.Context) ([]object, error) {
	files, err := DirFiles(d.dir)
	if err != nil {
		return nil, err
	}
	out := make([]object, len(files))
	for i, f := range files {
		out[i] = object{
			name:     f.Name,
			key:      f.Path,
			location: f.Path,
			version:  fmt.Sprintf("%d/%d", f.info.ModTime().UnixNano(), f.info.Size()),
		}
	}
	return out, nil
}

// File is one machine file of a folder.
type File struct {
	// Name is the machine's name: the file name without .yml or .yaml.
	Name string
	// Path is the folder joined with the file name.
	Path string
	info fs.FileInfo
}

// DirFiles lists the machine files directly inside dir, sorted by path, as the catalog loads
// them: every <name>.yml or <name>.yaml that is a regular file or a link to one (sub-folders and
// dot-files are skipped, see machine.IsMachineFile). Two files that give one name (a.yml and
// a.yaml) are both listed; the catalog refuses that machine as defined twice.
func DirFiles(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []File
	for _, e := range entries {
		name, ok := machine.IsMachineFile(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := os.Stat(path) // follows symlinks, unlike e.Info
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir, or a dangling link
		}
		if err != nil {
			return nil, err
		}
		if !info.Mode().IsRegular() {
			continue
		}
		out = append(out, File{Name: name, Path: path, info: info})
	}
	return out, nil
}

func (d dirSource) read(_ context.Context, o object) ([]byte, string, error) {
	data, err := os.ReadFile(o.key)
	return data, "", err
}

// s3API is the part of *s3.Client the catalog uses.
type s3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

type s3Source struct {
	client s3API
	bucket string
	prefix string
}

func (s *s3Source) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *s3Source) list(ctx context.Context) ([]object, error) {
	var out []object
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:    aws.String(s.bucket),
		Prefix:    aws.String(s.prefix),
		Delimiter: aws.String("/"), // only this folder's objects
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			rest := strings.TrimPrefix(key, s.prefix)
			if strings.Contains(rest, "/") {
				continue
			}
			name, ok := machine.IsMachineFile(rest)
			if !ok {
				continue
			}
			out = append(out, object{
				name:     name,
				key:      key,
				location: "s3://" + s.bucket + "/" + key,
				version:  aws.ToString(obj.ETag),
			})
		}
	}
	return out, nil
}

func (s *s3Source) read(ctx context.Context, o object) ([]byte, string, error) {
	res, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(o.key)})
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	// One byte more than allowed, so the caller can tell the file is too big.
	data, err := io.ReadAll(io.LimitReader(res.Body, machine.MaxFileSize+1))
	if err != nil {
		return nil, "", err
	}
	return data, aws.ToString(res.ETag), nil
}
