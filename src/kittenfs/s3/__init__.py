"""The S3 API: a layer over the master's index, read path and write path (docs/s3.md).

Every S3 object is a kittenFS key (``/<bucket>/<key>``), so the native API, the command line
and the operations (rebalance, repair, scrub, gc, rebuild) cover S3 data too.

- ``app.py``       the aiohttp application on its own port: routing and S3 error bodies
- ``sigv4.py``     pure: AWS Signature V4 (headers, presigned URLs, aws-chunked bodies)
- ``auth.py``      who sent a request: SigV4 against the master's credential store
- ``body.py``      request bodies: aws-chunked decoding, Content-MD5 and SDK checksums
- ``buckets.py``   bucket names and the bucket operations
- ``objects.py``   PUT, GET, HEAD, DELETE and COPY of objects
- ``listing.py``   ListObjects v1 and v2, ListObjectVersions over the index, page by page
- ``xml.py``       response bodies from templates, request bodies parsed safely
- ``errors.py``    S3's error codes and their statuses
"""
