"""Parametric light-curve models, one sampler per fine class.

Every sampler draws the physical parameters of one object (redshift, peak luminosity,
time scales, temperature evolution, extinction, host or stellar counterpart) and returns a
:class:`Source`: the noiseless *difference* flux in nJy at any (time, band), which is
what an image-subtraction survey measures. Extragalactic transients have no flux in the
template (difference = transient flux); variable stars and AGN do, so their difference
flux is the change relative to the reference and can be negative.

Colours come from a black body at the rest-frame wavelength of each band, so the
redshift (K-correction), the temperature evolution and the extinction move the colours
together. Luminosities are given as the rest-frame g-band absolute magnitude at peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from encoder.lightcurve import NJY_ZERO_POINT

#: Effective wavelengths (nm) of the global bands u, g, r, i, z, y.
BAND_WAVELENGTH_NM = np.array([367.0, 482.0, 626.0, 767.0, 900.0, 1000.0])
REF_WAVELENGTH_NM = 482.0
#: Host-galaxy colours relative to r (u, g, r, i, z, y) for a typical SN host.
_GALAXY_COLOUR = np.array([1.9, 0.65, 0.0, -0.35, -0.6, -0.75])
_HC_OVER_K = 1.438777e7  # h c / k in nm K

# ---------------------------------------------------------------------- cosmology
# Flat LCDM, H0 = 70, Om = 0.3, tabulated once (numpy only: astropy is slow to import).
_C_KM_S = 299_792.458
_H0 = 70.0
_Z_GRID = np.concatenate([np.linspace(1e-4, 0.1, 400), np.linspace(0.1, 4.0, 800)[1:]])
_E = np.sqrt(0.3 * (1 + _Z_GRID) ** 3 + 0.7)
_DC = np.concatenate([[0.0], np.cumsum(0.5 * (1 / _E[1:] + 1 / _E[:-1]) * np.diff(_Z_GRID))]) * _C_KM_S / _H0
_DC += _Z_GRID[0] * _C_KM_S / _H0  # first step from z = 0
_DL = _DC * (1 + _Z_GRID)  # Mpc
_MU = 5 * np.log10(_DL * 1e5)  # distance modulus (Mpc -> 10 pc units)
# rate per unit redshift of events in a volume-limited sample: dV/dz / (1 + z) (time dilation)
_DVDZ = _DC**2 / _E / (1 + _Z_GRID)
_ZCDF = np.concatenate([[0.0], np.cumsum(0.5 * (_DVDZ[1:] + _DVDZ[:-1]) * np.diff(_Z_GRID))])


def distance_modulus(z: float | np.ndarray) -> float | np.ndarray:
    return np.interp(z, _Z_GRID, _MU)


def redshift_for_mu(mu: float) -> float:
    return float(np.interp(mu, _MU, _Z_GRID))


def angular_scale_kpc_per_arcsec(z: float) -> float:
    d_a = float(np.interp(z, _Z_GRID, _DC)) / (1 + z) * 1e3  # kpc
    return d_a * np.pi / (180 * 3600)


def sample_redshift(rng: np.random.Generator, z_max: float, z_min: float = 0.002) -> float:
    """A redshift with the volumetric rate, in [z_min, z_max]."""
    z_max = max(z_max, z_min * 1.01)
    lo, hi = np.interp([z_min, z_max], _Z_GRID, _ZCDF)
    return float(np.interp(rng.uniform(lo, hi), _ZCDF, _Z_GRID))


# ---------------------------------------------------------------------- photometry helpers
def mag_to_njy(mag: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (-0.4 * (np.asarray(mag) - NJY_ZERO_POINT))


def planck_shape(wavelength_nm: np.ndarray, temperature: np.ndarray | float) -> np.ndarray:
    """f_nu of a black body (arbitrary units) at wavelength and temperature."""
    x = np.minimum(_HC_OVER_K / (wavelength_nm * temperature), 500.0)
    return 1.0 / (wavelength_nm**3 * np.expm1(x))


def extinction_mag(wavelength_nm: np.ndarray, a_v: float) -> np.ndarray:
    """A power-law approximation of a Milky-Way extinction curve, A_lambda for a given A_V."""
    return a_v * (wavelength_nm / 551.0) ** -1.35


def bazin(t: np.ndarray, t_rise: float, t_fall: float) -> np.ndarray:
    """Bazin et al. (2009) shape normalised to 1 at its maximum, which is at t = 0."""
    t_max = t_rise * np.log(max(t_fall / t_rise - 1.0, 1e-3))
    tt = t + t_max
    with np.errstate(over="ignore"):
        f = np.exp(-tt / t_fall) / (1 + np.exp(-tt / t_rise))
        peak = np.exp(-t_max / t_fall) / (1 + np.exp(-t_max / t_rise))
    return f / peak


def bazin_two_decline(t: np.ndarray, t_rise: float, t_fall: float, t_tail: float, tail: float) -> np.ndarray:
    """Bazin rise to 1 at t = 0, then a fast decline (t_fall) onto a slow tail (t_tail, fraction ``tail``)."""
    with np.errstate(over="ignore"):
        post = (1 - tail) * np.exp(-np.maximum(t, 0) / t_fall) + tail * np.exp(-np.maximum(t, 0) / t_tail)
    return np.where(t < 0, bazin(np.minimum(t, 0), t_rise, t_fall), post)


# ---------------------------------------------------------------------- the source
@dataclass
class Host:
    """The static counterpart in the reference image: a galaxy, a star, or nothing."""

    kind: str  # "galaxy" | "star" | "none"
    mag: np.ndarray  # per global band (6), NaN when absent
    offset_arcsec: float = 0.0  # transient to host centre
    position_angle: float = 0.0  # radians
    r_eff_arcsec: float = 1.0
    sersic_n: float = 1.0
    axis_ratio: float = 1.0
    nuclear: bool = False
    point_mag: np.ndarray | None = None  # a static point source at the transient (AGN nucleus)


@dataclass
class Source:
    """One simulated object: its truth and a noiseless difference-flux function."""

    cls: str
    flux: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (jd, band index) -> nJy
    t_start: float  # JD window where the object can be detected
    t_end: float
    host: Host
    redshift: float | None = None
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    """What a sampler needs from the survey."""

    survey: str
    t_min: float  # survey window
    t_max: float
    peak_limit: float  # the faintest peak apparent magnitude worth simulating
    ra: float = 0.0
    dec: float = 0.0


# ---------------------------------------------------------------------- extragalactic transients
def _explosive(
    rng: np.random.Generator,
    ctx: Context,
    cls: str,
    m_peak: float,
    shape: Callable[[np.ndarray], np.ndarray],
    temperature: Callable[[np.ndarray], np.ndarray],
    t_peak_temperature: float,
    pre_days: float,
    post_days: float,
    a_v_host: float,
    *,
    z_max: float = 3.0,
    nuclear: bool = False,
    bump: tuple[float, float, float] | None = None,
    params: dict[str, float] | None = None,
) -> Source:
    """A transient at a redshift drawn so its peak is brighter than ctx.peak_limit.

    ``shape(t_rest)`` is the rest-frame g-band flux relative to peak (t_rest = rest-frame
    days from peak), ``temperature(t_rest)`` the black-body temperature that sets the
    colours; ``bump`` = (amplitude,
    rest-frame day, width) of a near-infrared secondary maximum (SNe Ia).
    """
    a_v_mw = 3.1 * rng.exponential(0.04)
    # peak apparent mag at z ~ M + mu - 2.5 log10(1 + z) + extinction; choose z_max for the limit
    mu_max = ctx.peak_limit - m_peak - a_v_host - a_v_mw + 0.3
    z_lim = min(z_max, redshift_for_mu(mu_max)) if mu_max > _MU[0] else 0.0
    z = sample_redshift(rng, z_lim, z_min=min(0.002, z_lim * 0.5) if z_lim > 0 else 0.001)
    z = max(z, 1e-3)
    mu = float(distance_modulus(z))
    stretch = 1 + z
    t_peak = rng.uniform(ctx.t_min, ctx.t_max)
    lam_rest = BAND_WAVELENGTH_NM / stretch
    a_band = extinction_mag(lam_rest, a_v_host) + extinction_mag(BAND_WAVELENGTH_NM, a_v_mw)
    # flux per band at peak luminosity and reference temperature
    f_peak = float(mag_to_njy(m_peak + mu - 2.5 * np.log10(stretch))) * 10 ** (-0.4 * a_band)
    nir = None
    if bump is not None:
        nir = np.clip((lam_rest - 600.0) / 150.0, 0.0, 1.0)

    def flux(t: np.ndarray, band: np.ndarray) -> np.ndarray:
        tr = (t - t_peak) / stretch
        temp = temperature(tr)
        lam = lam_rest[band]
        sed = planck_shape(lam, temp) / planck_shape(REF_WAVELENGTH_NM, temp)  # colour only
        lum = shape(tr)
        if nir is not None:
            amp, day, width = bump
            lum = lum + amp * nir[band] * np.exp(-0.5 * ((tr - day) / width) ** 2) * (tr > 0)
        return f_peak[band] * lum * sed

    host = _galaxy_host(rng, ctx, z, mu, nuclear=nuclear, params=params)
    p = {"z": z, "m_peak": m_peak, "a_v_host": a_v_host, "t_peak": t_peak, **(params or {})}
    return Source(
        cls,
        flux,
        t_peak - pre_days * stretch,
        t_peak + post_days * stretch,
        host,
        redshift=z,
        params=p,
    )


def _galaxy_host(
    rng: np.random.Generator, ctx: Context, z: float, mu: float, *, nuclear: bool, params: dict | None
) -> Host:
    m_abs = rng.normal(-20.3, 1.0)
    r_mag = m_abs + mu - 2.5 * np.log10(1 + z) + 0.6 * z  # crude K-correction reddening
    colour = _GALAXY_COLOUR + rng.normal(0, 0.12, 6) * np.array([2, 1, 0, 1, 1.5, 2])
    mag = r_mag + colour
    r_eff_kpc = float(np.exp(rng.normal(np.log(3.0), 0.5)))
    r_eff = max(r_eff_kpc / angular_scale_kpc_per_arcsec(z), 0.3)
    if nuclear:
        offset = abs(rng.normal(0, 0.15))
    elif rng.uniform() < 0.04:  # hostless-looking: host too faint or far
        offset = rng.uniform(3, 12)
        mag = mag + rng.uniform(2.5, 4)
    else:
        offset = r_eff * rng.gamma(2.0, 0.45)
    return Host(
        "galaxy",
        mag,
        offset_arcsec=float(offset),
        position_angle=float(rng.uniform(0, np.pi)),
        r_eff_arcsec=float(min(r_eff, 15.0)),
        sersic_n=float(rng.choice([1.0, 1.0, 2.0, 4.0])),
        axis_ratio=float(rng.uniform(0.3, 1.0)),
        nuclear=nuclear,
    )


def _cooling(t_hot: float, t_cool: float, tau: float, pre_factor: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Temperature falling from t_hot at peak to t_cool with e-folding tau (rest days)."""

    def temp(tr: np.ndarray) -> np.ndarray:
        return t_cool + (t_hot - t_cool) * np.exp(-np.maximum(tr, 0.0) / tau) * np.where(tr < 0, pre_factor, 1.0)

    return temp


def _cut_before(shape: Callable[[np.ndarray], np.ndarray], t_explosion: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(tr: np.ndarray) -> np.ndarray:
        return np.where(tr > t_explosion, shape(tr), 0.0)

    return f


def sample_snia(rng: np.random.Generator, ctx: Context) -> Source:
    x1 = float(np.clip(rng.normal(0.0, 1.0), -3, 3))  # SALT-like stretch
    s = 1 + 0.1 * x1
    m_peak = rng.normal(-19.3, 0.15) - 0.14 * x1 + 0.05  # Phillips relation, rest-frame g
    t_rise, t_fall, t_tail = 3.6 * s, 14.0 * s * rng.uniform(0.9, 1.1), rng.uniform(50, 70)
    tail = rng.uniform(0.09, 0.15)
    rise_days = rng.normal(18.0, 1.5) * s  # explosion to peak
    shape = _cut_before(lambda tr: bazin_two_decline(tr, t_rise, t_fall, t_tail, tail), -rise_days)
    a_v = rng.exponential(0.12)
    temp = _cooling(rng.normal(12500, 800), rng.normal(5200, 300), 16.0 * s, pre_factor=0.85)
    bump = (rng.uniform(0.15, 0.35), rng.normal(27, 3) * s, 7.0 * s)
    return _explosive(
        rng, ctx, "SNIa", m_peak, shape, temp, 11500, rise_days + 5, 200, a_v, z_max=1.2, bump=bump,
        params={"x1": x1, "rise_days": rise_days},
    )  # fmt: skip


def sample_snibc(rng: np.random.Generator, ctx: Context) -> Source:
    m_peak = rng.normal(-17.6, 0.7)
    t_rise, t_fall, t_tail = rng.uniform(2.2, 4.0), rng.uniform(10, 18), rng.uniform(45, 70)
    tail = rng.uniform(0.1, 0.2)
    rise_days = rng.uniform(10, 18)
    shape = _cut_before(lambda tr: bazin_two_decline(tr, t_rise, t_fall, t_tail, tail), -rise_days)
    temp = _cooling(rng.normal(8000, 800), rng.normal(4800, 300), 14.0)
    return _explosive(rng, ctx, "SNIbc", m_peak, shape, temp, 8000, rise_days + 5, 180, rng.exponential(0.5), z_max=0.4)


def sample_snii(rng: np.random.Generator, ctx: Context) -> Source:
    """Type II-P/L: fast rise, plateau with a band-dependent slope, drop, radioactive tail."""
    m_peak = rng.normal(-17.0, 0.9)
    t_r = rng.uniform(1.5, 4.0)
    plateau = rng.uniform(50, 100)
    decline = float(np.exp(rng.uniform(np.log(40), np.log(300))))  # e-folding of the plateau
    width = rng.uniform(3, 7)
    tail = 10 ** (-0.4 * rng.uniform(1.8, 3.0))
    t0 = -4.0 * t_r  # explosion relative to the end of the rise ("peak")

    def shape(tr: np.ndarray) -> np.ndarray:
        tau = np.maximum(tr - t0, 0.0)
        with np.errstate(over="ignore"):
            drop = 1 / (1 + np.exp((tau - plateau) / width))
        main = (1 - np.exp(-tau / t_r)) * np.exp(-tau / decline) * drop
        tl = tail * np.exp(-(tau - plateau) / 111.3) * (1 - drop)
        return np.where(tr > t0, (main + tl) / 0.98, 0.0)

    temp = _cooling(rng.normal(14000, 2000), rng.normal(6000, 300), rng.uniform(15, 30), pre_factor=1.1)
    return _explosive(
        rng, ctx, "SNII", m_peak, shape, temp, 16000, -t0 + 5, plateau + 150, rng.exponential(0.3), z_max=0.3,
        params={"plateau_days": plateau},
    )  # fmt: skip


def sample_sniin(rng: np.random.Generator, ctx: Context) -> Source:
    m_peak = rng.normal(-18.7, 0.8)
    t_rise, t_fall = rng.uniform(4, 10), float(np.exp(rng.uniform(np.log(30), np.log(100))))
    rise_days = 5 * t_rise
    shape = _cut_before(lambda tr: bazin(tr, t_rise, t_fall), -rise_days)
    temp = _cooling(rng.normal(10500, 1200), rng.normal(7000, 700), 80.0)
    return _explosive(
        rng, ctx, "SNIIn", m_peak, shape, temp, 10500, rise_days + 5, min(6 * t_fall, 600), rng.exponential(0.25),
        z_max=0.6,
    )  # fmt: skip


def sample_slsn(rng: np.random.Generator, ctx: Context) -> Source:
    m_peak = rng.normal(-21.3, 0.5)
    t_rise, t_fall = rng.uniform(6, 14), rng.uniform(25, 60)
    rise_days = 4.5 * t_rise  # ~ 27 - 63 rest days
    shape = _cut_before(lambda tr: bazin(tr, t_rise, t_fall), -rise_days)
    temp = _cooling(rng.normal(15000, 1500), rng.normal(8000, 800), 50.0)
    return _explosive(
        rng, ctx, "SLSN", m_peak, shape, temp, 15000, rise_days + 5, 5 * t_fall, rng.exponential(0.1), z_max=2.0,
        params={"rise_days": rise_days},
    )  # fmt: skip


def sample_pisn(rng: np.random.Generator, ctx: Context) -> Source:
    m_peak = rng.normal(-20.5, 0.5)
    t_rise, t_fall = rng.uniform(25, 40), rng.uniform(100, 200)
    rise_days = 5 * t_rise  # ~ 125 - 200 rest days
    shape = _cut_before(lambda tr: bazin(tr, t_rise, t_fall), -rise_days)
    temp = _cooling(rng.normal(7500, 600), rng.normal(5000, 400), 150.0)
    return _explosive(
        rng, ctx, "PISN", m_peak, shape, temp, 7500, rise_days + 5, 4 * t_fall, rng.exponential(0.1), z_max=2.0,
        params={"rise_days": rise_days},
    )  # fmt: skip


def sample_tde(rng: np.random.Generator, ctx: Context) -> Source:
    """Gaussian rise, t^-5/3 decline, constant hot temperature (blue, no colour evolution)."""
    m_peak = rng.normal(-19.6, 0.6)
    sigma_rise = rng.uniform(8, 25)
    t0 = rng.uniform(15, 45)

    def shape(tr: np.ndarray) -> np.ndarray:
        rise = np.exp(-0.5 * (tr / sigma_rise) ** 2)
        decline = ((np.maximum(tr, 0) + t0) / t0) ** (-5.0 / 3.0)
        return np.where(tr < 0, rise, decline) * (tr > -3 * sigma_rise)

    temperature = rng.uniform(13000, 30000)
    temp = _cooling(temperature, temperature, 1.0)
    return _explosive(
        rng, ctx, "TDE", m_peak, shape, temp, temperature, 3 * sigma_rise, 400, rng.exponential(0.05), z_max=0.5,
        nuclear=True, params={"temperature": temperature},
    )  # fmt: skip


def sample_kn(rng: np.random.Generator, ctx: Context) -> Source:
    """Kilonova: peaks within a day, fades by ~1 mag/day in g, reddening fast."""
    m_peak = rng.normal(-15.8, 0.6)
    tau = rng.uniform(0.8, 1.6)

    def shape(tr: np.ndarray) -> np.ndarray:
        t = tr + 0.7
        return np.where(t > 0, (1 - np.exp(-t / 0.25)) * np.exp(-np.maximum(tr, 0) / tau), 0.0)

    temp = _cooling(rng.normal(7000, 700), 2500.0, rng.uniform(1.2, 2.5), pre_factor=1.0)
    return _explosive(
        rng, ctx, "KN", m_peak, shape, temp, 7000, 2, 20, rng.exponential(0.1), z_max=0.2, params={"tau": tau}
    )


# ---------------------------------------------------------------------- AGN, stars
def _reference_mag(survey: str, rng: np.random.Generator, lo: float, hi: float) -> float:
    shift = 3.0 if survey == "lsst" else 0.0
    return float(rng.uniform(lo + shift, hi + shift))


def _ar1(a: float, noise: np.ndarray, x0: float, block: int = 64) -> np.ndarray:
    """x[0] = x0, x[i] = a x[i-1] + noise[i], vectorised in blocks (numpy only)."""
    n = len(noise)
    n_blocks = -(-n // block)
    e = np.zeros(n_blocks * block)
    e[:n] = noise
    e[0] = x0
    k = np.arange(block)
    lag = k[:, None] - k[None, :]
    kernel = np.where(lag >= 0, a ** np.maximum(lag, 0), 0.0)  # kernel[i, j] = a^(i-j), j <= i
    y = e.reshape(n_blocks, block) @ kernel.T
    carry = a ** (k + 1)
    for b in range(1, n_blocks):
        y[b] += carry * y[b - 1, -1]
    return y.ravel()[:n]


def sample_agn(rng: np.random.Generator, ctx: Context) -> Source:
    """Damped random walk (in magnitude) of a nucleus, stronger in the blue; years long."""
    r_mean = _reference_mag(ctx.survey, rng, 15.5, 19.5)
    colour = np.array([0.35, 0.3, 0.0, -0.15, -0.3, -0.4]) + rng.normal(0, 0.08, 6)
    ref = np.asarray(mag_to_njy(r_mean + colour))
    tau = float(np.exp(rng.uniform(np.log(80), np.log(800))))  # observer-frame days
    sf_inf = rng.uniform(0.15, 0.45)  # mag, r band
    chroma = np.array([1.6, 1.35, 1.0, 0.85, 0.75, 0.7])
    t0 = ctx.t_min - 5
    n_days = int(ctx.t_max - t0) + 10
    a = np.exp(-1.0 / tau)
    noise = rng.normal(0, sf_inf / np.sqrt(2) * np.sqrt(1 - a * a), n_days)
    x = _ar1(a, noise, rng.normal(0, sf_inf / np.sqrt(2)))
    burst = rng.uniform() < 0.3  # an occasional flare of the nucleus, which makes alerts
    t_burst, w_burst, a_burst = rng.uniform(ctx.t_min, ctx.t_max), rng.uniform(20, 120), rng.uniform(0.3, 1.0)

    def flux(t: np.ndarray, band: np.ndarray) -> np.ndarray:
        u = t - t0
        i = np.clip(u.astype(np.int64), 0, n_days - 2)
        w = np.clip(u - i, 0, 1)
        dm = (x[i] * (1 - w) + x[i + 1] * w) * chroma[band]
        if burst:
            dm = dm - a_burst * chroma[band] * np.exp(-0.5 * ((t - t_burst) / w_burst) ** 2)
        return ref[band] * (10 ** (-0.4 * dm) - 1)

    z = float(rng.uniform(0.05, 1.5))
    host_mag = r_mean + rng.uniform(0.3, 2.0) + _GALAXY_COLOUR
    host = Host(
        "galaxy",
        host_mag,
        offset_arcsec=abs(rng.normal(0, 0.1)),
        position_angle=float(rng.uniform(0, np.pi)),
        r_eff_arcsec=float(rng.uniform(0.8, 3.0)),
        sersic_n=4.0,
        axis_ratio=float(rng.uniform(0.5, 1)),
        nuclear=True,
        point_mag=r_mean + colour,
    )
    return Source(
        "AGN",
        flux,
        ctx.t_min,
        ctx.t_max,
        host,
        redshift=z,
        params={"tau": tau, "sf_inf": sf_inf, "r_mean": r_mean, "burst": float(burst)},
    )


def _star(rng: np.random.Generator, r_mag: float, colour: np.ndarray) -> Host:
    return Host("star", r_mag + colour, offset_arcsec=abs(rng.normal(0, 0.08)), r_eff_arcsec=0.0, nuclear=True)


def sample_cv(rng: np.random.Generator, ctx: Context) -> Source:
    """Dwarf nova: quiescent star with recurrent outbursts (~1 d rise, 2-3.5 mag, days long)."""
    r_q = _reference_mag(ctx.survey, rng, 17.0, 21.5)
    colour = np.array([-0.3, 0.15, 0.0, -0.05, -0.1, -0.1]) + rng.normal(0, 0.1, 6)
    ref = np.asarray(mag_to_njy(r_q + colour))
    recurrence = float(np.exp(rng.uniform(np.log(15), np.log(150))))
    amp = rng.uniform(2.0, 3.5)  # g mag above quiescence
    t_ob = rng.uniform(11000, 16000)
    sed = planck_shape(BAND_WAVELENGTH_NM, t_ob) / planck_shape(REF_WAVELENGTH_NM, t_ob)
    f_amp = ref[1] * (10 ** (0.4 * amp) - 1)
    # outburst times across the window (plus one guaranteed in it)
    starts = [rng.uniform(ctx.t_min, ctx.t_max)]
    t = starts[0]
    while t < ctx.t_max + 30:
        t += recurrence * rng.uniform(0.6, 1.4)
        starts.append(t)
    t = starts[0]
    while t > ctx.t_min - 30:
        t -= recurrence * rng.uniform(0.6, 1.4)
        starts.append(t)
    starts_a = np.sort(np.array(starts))
    n = len(starts_a)
    rise = rng.uniform(0.5, 1.5, n)
    plateau = rng.choice([1.0, 2.0, 8.0], n, p=[0.5, 0.3, 0.2]) * rng.uniform(0.7, 1.5, n)  # normal / super-outbursts
    decay = rng.uniform(0.8, 2.0, n)  # e-folding days after the plateau
    scale = rng.uniform(0.6, 1.0, n)

    def flux(tt: np.ndarray, band: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(starts_a, tt) - 1, 0, n - 1)
        dt = tt - starts_a[k]
        shape = np.where(
            dt < 0,
            0.0,
            np.where(
                dt < rise[k],
                (dt / rise[k]) ** 2,
                np.where(dt < rise[k] + plateau[k], 1.0, np.exp(-(dt - rise[k] - plateau[k]) / decay[k])),
            ),
        )
        return f_amp * scale[k] * shape * sed[band]

    return Source(
        "CV",
        flux,
        ctx.t_min,
        ctx.t_max,
        _star(rng, r_q, colour),
        params={"recurrence": recurrence, "amplitude": amp, "r_quiescent": r_q},
    )


def sample_microlensing(rng: np.random.Generator, ctx: Context) -> Source:
    """Paczynski point-lens magnification of a star: symmetric and achromatic."""
    r_base = _reference_mag(ctx.survey, rng, 16.0, 20.5)
    colour = np.array([1.6, 0.7, 0.0, -0.3, -0.45, -0.55]) + rng.normal(0, 0.1, 6)
    ref = np.asarray(mag_to_njy(r_base + colour))
    t_e = float(np.exp(rng.uniform(np.log(8), np.log(120))))
    u0 = rng.uniform(0.02, 0.8)
    t0 = rng.uniform(ctx.t_min, ctx.t_max)

    def flux(t: np.ndarray, band: np.ndarray) -> np.ndarray:
        u2 = u0**2 + ((t - t0) / t_e) ** 2
        amp = (u2 + 2) / np.sqrt(u2 * (u2 + 4))
        return ref[band] * (amp - 1)

    return Source(
        "Microlensing",
        flux,
        t0 - 5 * t_e,
        t0 + 5 * t_e,
        _star(rng, r_base, colour),
        params={"t0": t0, "t_e": t_e, "u0": u0},
    )


def sample_flare(rng: np.random.Generator, ctx: Context, visit_times: np.ndarray | None = None) -> Source:
    """M-dwarf flare: minutes-long rise, tens of minutes decay, hot (blue) on a red star."""
    r_q = _reference_mag(ctx.survey, rng, 15.0, 20.0)
    colour = np.array([3.8, 1.45, 0.0, -1.3, -1.9, -2.2]) + rng.normal(0, 0.1, 6)
    ref = np.asarray(mag_to_njy(r_q + colour))
    sed = planck_shape(BAND_WAVELENGTH_NM, 10000.0) / planck_shape(REF_WAVELENGTH_NM, 10000.0)
    n_flares = 1 + rng.poisson(3)
    t_f = rng.uniform(ctx.t_min, ctx.t_max, n_flares)
    if visit_times is not None and len(visit_times):  # the main flare is caught by a visit
        t_f[0] = rng.choice(visit_times) - rng.uniform(0.002, 0.03)
    amp = rng.uniform(1.0, 4.0, n_flares)  # g mag above quiescence
    f_amp = ref[1] * (10 ** (0.4 * amp) - 1)
    t_rise = rng.uniform(0.001, 0.005, n_flares)
    t_decay = rng.uniform(0.01, 0.08, n_flares)

    def flux(t: np.ndarray, band: np.ndarray) -> np.ndarray:
        dt = t[:, None] - t_f[None, :]
        shape = np.exp(-np.abs(dt) / np.where(dt < 0, t_rise, t_decay))
        return (shape * f_amp).sum(axis=1) * sed[band]

    return Source(
        "Flare",
        flux,
        ctx.t_min,
        ctx.t_max,
        _star(rng, r_q, colour),
        params={"t_flare": float(t_f[0]), "amplitude": float(amp[0])},
    )


def sample_periodic(rng: np.random.Generator, ctx: Context) -> Source:
    """Pulsating star (RR Lyrae-like): saw-tooth light curve, period 0.3-0.9 d."""
    r_mean = _reference_mag(ctx.survey, rng, 14.0, 19.0)
    colour = np.array([1.1, 0.25, 0.0, -0.1, -0.15, -0.15]) + rng.normal(0, 0.05, 6)
    ref = np.asarray(mag_to_njy(r_mean + colour))
    period = rng.uniform(0.3, 0.9)
    amp = rng.uniform(0.4, 1.1)
    phase0 = rng.uniform(0, 1)
    chroma = np.array([1.4, 1.25, 1.0, 0.8, 0.7, 0.65])

    def flux(t: np.ndarray, band: np.ndarray) -> np.ndarray:
        ph = ((t - ctx.t_min) / period + phase0) % 1.0
        saw = np.where(ph < 0.15, ph / 0.15, 1 - (ph - 0.15) / 0.85)  # fast rise, slow decline
        dm = -amp * chroma[band] * (saw - 0.4)
        return ref[band] * (10 ** (-0.4 * dm) - 1)

    return Source(
        "Periodic",
        flux,
        ctx.t_min,
        ctx.t_max,
        _star(rng, r_mean, colour),
        params={"period": period, "amplitude": amp},
    )


SAMPLERS: dict[str, Callable[..., Source]] = {
    "SNIa": sample_snia,
    "SNIbc": sample_snibc,
    "SNII": sample_snii,
    "SNIIn": sample_sniin,
    "SLSN": sample_slsn,
    "TDE": sample_tde,
    "AGN": sample_agn,
    "CV": sample_cv,
    "KN": sample_kn,
    "Microlensing": sample_microlensing,
    "Flare": sample_flare,
    "PISN": sample_pisn,
    "Periodic": sample_periodic,
}
