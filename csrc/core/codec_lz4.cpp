// filled in by the codec_lz4 work
