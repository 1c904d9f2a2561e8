#!/usr/bin/env bash
# Rebuild the portal's vendored front-end files from the pinned npm packages in
# package.json (run after changing a version; commit the files it writes):
#   codemirror.js            CodeMirror 6 editor + SQL language, one minified ES module
#   swagger-ui/              swagger-ui-dist's bundle and CSS (the /docs page)
#   redoc/                   ReDoc's standalone bundle (the /redoc page)
# Needs node and npm; the page itself needs neither (no build at run time).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp package.json codemirror-entry.js "$work/"
(cd "$work" && npm install --no-audit --no-fund --silent >/dev/null)
"$work/node_modules/.bin/esbuild" "$work/codemirror-entry.js" --bundle --format=esm \
    --minify --legal-comments=none --outfile=codemirror.js
mkdir -p swagger-ui redoc
cp "$work/node_modules/swagger-ui-dist/swagger-ui-bundle.js" \
   "$work/node_modules/swagger-ui-dist/swagger-ui.css" \
   "$work/node_modules/swagger-ui-dist/LICENSE" swagger-ui/
cp "$work/node_modules/redoc/bundles/redoc.standalone.js" redoc/
cp "$work/node_modules/redoc/LICENSE" redoc/
# ReDoc shows its maker's logo from their CDN: an empty image instead (nothing leaves the service)
sed -i 's#"https://cdn.redoc.ly/redoc/logo-mini.svg"#"data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E"#' \
    redoc/redoc.standalone.js
cp "$work/node_modules/@codemirror/view/LICENSE" codemirror.LICENSE
echo "built: $(du -sh codemirror.js swagger-ui redoc | tr '\n' ' ')"
