# benchmarks/device_site.sh -- sourced by gpu_smollm2.sh and gpu_lease.sh on the GPU machine: the
# carried wheels (.whl/, from benchmarks/device_wheels.sh) installed once per lease into
# $STATE/site, which both scripts put on PYTHONPATH. The caller defines STATE, PYTHON and status.

install_wheels() {      # $1: folder of wheels, $2: target
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$2" "$1"/*.whl
}

install_carried_wheels() {      # .whl/ into $STATE/site when this call carries another set; fails if none is there
  if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null \
      && [[ "$(ls .whl)" != "$(cat "$STATE/site/.installed" 2>/dev/null)" ]]; then
    rm -rf "$STATE/site"
    if ! install_wheels .whl "$STATE/site"; then status "ERROR: the carried wheels did not install (above)"; exit 1; fi
    ls .whl > "$STATE/site/.installed"
    status "installed $(find .whl -maxdepth 1 -type f -name '*.whl' | wc -l) wheels into $STATE/site"
  fi
  [[ -f "$STATE/site/.installed" ]]
}
