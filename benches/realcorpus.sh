# Sourced by corpora.sh: a real corpus the project has not been tuned on.
# Ten released versions of Django's source distribution, fetched through
# PyPI's usual client (pip) once per machine into $CORPUS_CACHE, then laid
# out in $WORK/base as
#   trees : the ten releases unpacked side by side (about 67 000 files);
#   tars  : the same ten releases as uncompressed tar files.
# Nothing is built or installed: `pip download --no-binary :all:` only
# fetches the sdists.
CORPUS_CACHE="${CORPUS_CACHE:-$HOME/.cache/dedup-tools/corpus}"
DJANGO_VERSIONS="${DJANGO_VERSIONS:-5.0.1 5.0.2 5.0.3 5.0.4 5.0.5 5.0.6 5.0.7 5.0.8 5.0.9 5.0.10}"

real_corpus() {
  command -v pip >/dev/null || command -v pip3 >/dev/null || {
    echo "the real corpus needs pip (Debian: apt-get install -y python3-pip)" >&2
    exit 1
  }
  local pip
  pip=$(command -v pip || command -v pip3)
  mkdir -p "$CORPUS_CACHE" "$WORK/base/trees" "$WORK/base/tars"
  local v
  for v in $DJANGO_VERSIONS; do
    local sdist
    sdist=$(compgen -G "$CORPUS_CACHE/[Dd]jango-$v.tar.gz" | head -1 || true)
    if [ -z "$sdist" ]; then
      echo "fetching Django $v from PyPI ..." >&2
      "$pip" download --quiet --no-deps --no-binary :all: "django==$v" -d "$CORPUS_CACHE" >&2 2>/dev/null ||
        "$pip" download --quiet --no-deps --no-binary :all: "django==$v" -d "$CORPUS_CACHE" >&2
      sdist=$(compgen -G "$CORPUS_CACHE/[Dd]jango-$v.tar.gz" | head -1)
    fi
    tar -xzf "$sdist" -C "$WORK/base/trees"
    gzip -dc "$sdist" >"$WORK/base/tars/django-$v.tar"
  done
  echo "real corpus: $(find "$WORK/base/trees" -type f | wc -l) files in trees, $(du -sb "$WORK/base/tars" | cut -f1) bytes of tars" >&2
}
