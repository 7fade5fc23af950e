/*
 * The pod sandbox image, an OCI archive built by tools/mkimage.py, linked into
 * the binary so the runtime can import it into containerd without a registry
 * (see runtime_int.h: hc_pause_image_*). The Makefile passes the archive's
 * path and the image name it carries.
 */
	.section .rodata
	.balign 16
	.globl hc_pause_image_start
hc_pause_image_start:
	.incbin PAUSE_IMAGE_FILE
	.globl hc_pause_image_end
hc_pause_image_end:
	.byte 0

	.globl hc_pause_image_name
hc_pause_image_name:
	.asciz PAUSE_IMAGE_NAME

	.section .note.GNU-stack,"",@progbits
