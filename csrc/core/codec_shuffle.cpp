// filled in by the codec_shuffle work
