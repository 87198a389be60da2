"""Run by test_s3_clients.py in a venv with s3fs, pandas and pyarrow: parquet on s3:// through
pandas (s3fs), and through pyarrow's own S3 filesystem, against $S3_URL."""

import os
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import s3fs

url, key, secret = os.environ["S3_URL"], os.environ["S3_KEY"], os.environ["S3_SECRET"]
options = {
    "key": key,
    "secret": secret,
    "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
}

fs = s3fs.S3FileSystem(**options)
fs.mkdir("tables")
frame = pd.DataFrame({"n": range(50_000), "s": [f"row {i}" for i in range(50_000)]})
frame.to_parquet("s3://tables/pandas.parquet", storage_options=options)
assert pd.read_parquet("s3://tables/pandas.parquet", storage_options=options).equals(frame)
for i in range(20):  # a dataset of many files, read back as one
    frame.iloc[i * 100 : (i + 1) * 100].to_parquet(
        f"s3://tables/parts/{i:02d}.parquet", storage_options=options
    )
assert len(fs.ls("tables/parts")) == 20

where = urlsplit(url)
arrow = pafs.S3FileSystem(
    access_key=key,
    secret_key=secret,
    endpoint_override=where.netloc,
    scheme=where.scheme,
    region="us-east-1",
)
dataset = pq.read_table("tables/parts", filesystem=arrow)
assert dataset.num_rows == 2000 and sorted(dataset.column("n").to_pylist()) == list(range(2000))
table = pa.table({"x": list(range(100_000))})
pq.write_table(table, "tables/arrow.parquet", filesystem=arrow)
assert pq.read_table("tables/arrow.parquet", filesystem=arrow).equals(table)
big = os.urandom(12 * 1024 * 1024)  # over pyarrow's part size: a multipart upload
with arrow.open_output_stream("tables/big.bin") as out:
    out.write(big)
with arrow.open_input_file("tables/big.bin") as stream:
    assert stream.size() == len(big)
    assert stream.read_at(1000, 6 * 1024 * 1024 - 500) == big[6 * 1024 * 1024 - 500 :][:1000]
    stream.seek(0)
    assert stream.read() == big
names = {info.path for info in arrow.get_file_info(pafs.FileSelector("tables"))}
assert {"tables/pandas.parquet", "tables/arrow.parquet", "tables/big.bin"} <= names, names
print("ok")
