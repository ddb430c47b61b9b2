#!/bin/sh
# A CGI script of the apache2 recipe: the query string comes back in the body.
printf 'Content-Type: text/plain\r\n\r\n'
printf 'cgi says %s\n' "$QUERY_STRING"
