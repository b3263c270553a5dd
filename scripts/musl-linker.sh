#!/bin/sh
# Linker for the linux musl addon on a glibc (Debian, Ubuntu) machine: musl-gcc, which links
# against musl, plus a folder holding only libgcc_s.so.1. A musl cdylib links the unwinder from
# it (Alpine's libgcc package provides it, node:*-alpine images have it), and Debian keeps it
# among glibc's libraries, where musl-gcc does not look and must not (it would find glibc).
set -e
dir="$(dirname "$0")/../target/musl-libgcc"
mkdir -p "$dir"
ln -sf "$(gcc -print-file-name=libgcc_s.so.1)" "$dir/libgcc_s.so.1"
exec musl-gcc -L"$dir" "$@"
