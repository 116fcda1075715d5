// filled in by the codec_quantize work
