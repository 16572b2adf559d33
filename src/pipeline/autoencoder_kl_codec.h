// AutoencoderKL as the Stream's LatentCodec. AutoencoderKL keeps its latent scale inside the
// model (encode() returns (mean - shift) * scaling_factor, decode() undoes it), so the codec
// reports a scaling factor of 1 and the Stream's z = E(x)·sf / D(x̂₀ / sf) leave the latents as
// they are. encode() gives the latent distribution's mean; the original StreamDiffusion samples
// it (latent_dist.sample(generator)), a difference of the VAE's small posterior std.
#pragma once

#include "models/autoencoder_kl.h"
#include "pipeline/stream.h"

namespace sd {

class AutoencoderKLCodec : public LatentCodec {
 public:
  explicit AutoencoderKLCodec(const AutoencoderKL& vae) : vae_(vae) {}
  Tensor encode(const Tensor& image) const override { return vae_.encode(image); }
  Tensor decode(const Tensor& latents) const override { return vae_.decode(latents); }
  float scaling_factor() const override { return 1.f; }
  int latent_channels() const override { return vae_.config().latent_channels; }
  int downscale() const override { return vae_.config().downscale(); }

 private:
  const AutoencoderKL& vae_;
};

}  // namespace sd
