package terraform

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// Backend is what a script's own `backend "s3"` block says about where its state lives. CloudSeam
// gave Terraform only the key, so a CloudSeam script names its state bucket and region itself;
// stackseam keeps them, so the state such a script already has is found (README.md, "The task
// satisfier").
type Backend struct {
	// Bucket and Region are the block's literal values; empty when the block does not set them.
	Bucket string
	Region string
}

// stateLocation is where one run's state is: the bucket and region (the script's own, or the
// Runner's) and the key (StateKey).
type stateLocation struct {
	Bucket, Region, Key string
}

// in points an S3 call at the state bucket's region, which may not be the Runner's: a bucket in
// another region answers a request signed for the wrong one with a redirect.
func (st stateLocation) in(o *s3.Options) {
	if st.Region != "" {
		o.Region = st.Region
	}
}

// locate is where a run's state is: the bucket and region the script's backend block declares,
// each defaulting to the Runner's, and StateKey. A backend block the satisfier cannot read is
// reported in the log and the Runner's bucket is used: Terraform itself reports a broken file
// better than a partial parse can.
func (r *Runner) locate(dir, machine, stackID string, src Source, log *runLog) stateLocation {
	st := stateLocation{Bucket: r.Bucket, Region: r.Region, Key: StateKey(machine, stackID, src)}
	declared, err := DeclaredBackend(dir)
	if err != nil {
		fmt.Fprintf(log, "stackseam: warning: %v; the state goes to the satisfier's bucket\n", err)
		return st
	}
	if declared.Bucket != "" {
		st.Bucket = declared.Bucket
		fmt.Fprintf(log, "stackseam: the script's backend names the state bucket %s; it is kept\n", declared.Bucket)
	}
	if declared.Region != "" {
		st.Region = declared.Region
	}
	return st
}

// DeclaredBackend reads the bucket and region of the `backend "s3"` block of the root module in
// dir (its .tf and .tf.json files, and OpenTofu's .tofu and .tofu.json, which replace a .tf file of
// the same name), without running Terraform. Override files (override.tf, *_override.tf) are read
// last and win, as Terraform merges them. A value that is not a literal string is an error: the
// satisfier must know the bucket before Terraform runs, to hold the state's lock in it.
func DeclaredBackend(dir string) (Backend, error) {
	fs := newTofuFS()
	infos, err := fs.ReadDir(dir)
	if err != nil {
		return Backend{}, fmt.Errorf("error reading the source folder: %w", err)
	}
	var primary, overrides []string
	for _, info := range infos {
		name := info.Name()
		if info.IsDir() || !(strings.HasSuffix(name, ".tf") || strings.HasSuffix(name, ".tf.json")) {
			continue
		}
		stem := strings.TrimSuffix(strings.TrimSuffix(name, ".json"), ".tf")
		if stem == "override" || strings.HasSuffix(stem, "_override") {
			overrides = append(overrides, name)
		} else {
			primary = append(primary, name)
		}
	}
	var b Backend
	parser := hclparse.NewParser()
	for _, name := range append(primary, overrides...) {
		path := fs.path(filepath.Join(dir, name))
		var f *hcl.File
		var diags hcl.Diagnostics
		if strings.HasSuffix(name, ".json") {
			f, diags = parser.ParseJSONFile(path)
		} else {
			f, diags = parser.ParseHCLFile(path)
		}
		if diags.HasErrors() {
			return b, fmt.Errorf("error reading the backend settings in %s: %w", name, diags)
		}
		if err := readS3Backend(f.Body, &b); err != nil {
			return b, fmt.Errorf("error reading the backend settings in %s: %w", name, err)
		}
	}
	return b, nil
}

// readS3Backend sets b's fields from the `terraform { backend "s3" { … } }` blocks of body.
func readS3Backend(body hcl.Body, b *Backend) error {
	content, _, diags := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "terraform"}}})
	if diags.HasErrors() {
		return diags
	}
	for _, tb := range content.Blocks {
		inner, _, diags := tb.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "backend", LabelNames: []string{"type"}}}})
		if diags.HasErrors() {
			return diags
		}
		for _, bb := range inner.Blocks {
			if bb.Labels[0] != "s3" {
				continue
			}
			attrs, diags := bb.Body.JustAttributes()
			if diags.HasErrors() {
				return diags
			}
			for name, field := range map[string]*string{"bucket": &b.Bucket, "region": &b.Region} {
				a, ok := attrs[name]
				if !ok {
					continue
				}
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
					return fmt.Errorf("backend \"s3\" %s must be a literal string", name)
				}
				*field = v.AsString()
			}
		}
	}
	return nil
}

// LegacyStateKey is the key CloudSeam gave the same state, when stackseam's StateKey differs from
// it ("" otherwise): CloudSeam passed `<machine>/<stackId>/<source key>` as written — a key with a
// trailing slash, a leading slash or "//" kept them (the S3 backend of today's Terraform and
// OpenTofu refuses such a key, so StateKey cleans it), and a local source, which has no key, gave
// `<machine>/<stackId>/undefined` (JavaScript's text for a missing value).
func LegacyStateKey(machine, stackID string, src Source) string {
	where := src.Key
	if src.Type == SourceLocal {
		where = "undefined"
	}
	legacy := machine + "/" + stackID + "/" + where
	if legacy == StateKey(machine, stackID, src) {
		return ""
	}
	return legacy
}

// adoptLegacyState copies the state CloudSeam left at legacy to st.Key when st.Key holds none yet,
// so that a stack brought over from CloudSeam finds its resources instead of creating them again.
// It runs holding the state's lock, so no other run of this state copies or writes meanwhile. The
// legacy object is left in place (nothing is deleted).
func (r *Runner) adoptLegacyState(ctx context.Context, st stateLocation, legacy string, log *runLog) error {
	if legacy == "" {
		return nil
	}
	if _, err := r.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(st.Key)}, st.in); err == nil {
		return nil
	} else if !notFound(err) {
		return fmt.Errorf("error looking for the state s3://%s/%s: %w", st.Bucket, st.Key, err)
	}
	if _, err := r.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(legacy)}, st.in); err != nil {
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("error looking for CloudSeam's state s3://%s/%s: %w", st.Bucket, legacy, err)
	}
	_, err := r.S3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String(st.Key),
		CopySource: aws.String(st.Bucket + "/" + escapeKey(legacy))}, st.in)
	if err != nil {
		return fmt.Errorf("error copying CloudSeam's state s3://%s/%s to %s: %w", st.Bucket, legacy, st.Key, err)
	}
	fmt.Fprintf(log, "stackseam: adopted CloudSeam's state s3://%s/%s as %s (the original is left in place)\n", st.Bucket, legacy, st.Key)
	return nil
}

// escapeKey URL-encodes each segment of an S3 key, as CopySource wants it.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
