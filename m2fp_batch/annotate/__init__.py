"""Pure numpy annotation functions: RLE, part statistics, skin tone, colours, person tracks."""
