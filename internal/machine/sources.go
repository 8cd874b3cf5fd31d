package machine

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
)

// NewDirCatalog returns a catalog of the machine files directly inside dir
// (every <name>.yml or <name>.yaml; sub-folders and dot-files are skipped). A
// file is read again when its modification time or size changes.
func NewDirCatalog(dir string, opts CatalogOptions) *Catalog {
	return newCatalog(dirSource{dir: dir}, opts)
}

// NewS3Catalog returns a catalog of the machine files in bucket under prefix:
// each object <prefix><name>.yml or <prefix><name>.yaml is a machine (objects
// in deeper "folders" are not). prefix is a folder such as "machines/"; a
// missing trailing slash is added, and "" means the bucket's top level. An
// object is downloaded again when its ETag changes.
func NewS3Catalog(client *s3.Client, bucket, prefix string, opts CatalogOptions) *Catalog {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return newCatalog(&s3Source{client: client, bucket: bucket, prefix: prefix}, opts)
}

// IsMachineFile reports the machine name of a file name the catalogs load (and `stackseam
// validate` checks, so both judge the same files). Dot-files are skipped: editors and sync tools
// leave them next to real ones.
func IsMachineFile(base string) (string, bool) {
	if strings.HasPrefix(base, ".") {
		return "", false
	}
	return NameFromFile(base)
}

type dirSource struct {
	dir string
}

func (d dirSource) String() string { return d.dir }

func (d dirSource) list(_ context.Context) ([]object, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var out []object
	for _, e := range entries {
		name, ok := IsMachineFile(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(d.dir, e.Name())
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
		out = append(out, object{
			name:     name,
			key:      path,
			location: path,
			version:  fmt.Sprintf("%d/%d", info.ModTime().UnixNano(), info.Size()),
		})
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
			name, ok := IsMachineFile(rest)
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
	data, err := io.ReadAll(io.LimitReader(res.Body, maxFileSize+1))
	if err != nil {
		return nil, "", err
	}
	return data, aws.ToString(res.ETag), nil
}
