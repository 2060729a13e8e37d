"""Real human protein complexes and pathways: the shared biology of the built-in dataset.

Used by the synthetic screen (genes of one module get correlated knock-down effects) and by
checks that a gene embedding carries biology (are a gene's nearest neighbours its complex
partners?). Memberships follow CORUM / HGNC gene groups; symbols are current HGNC symbols.
"""

from __future__ import annotations

GENE_MODULES: dict[str, tuple[str, ...]] = {
    "cytosolic_ribosome_large": (
        "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9", "RPL10", "RPL10A",
        "RPL11", "RPL12", "RPL13", "RPL14", "RPL15", "RPL18", "RPL19", "RPL21", "RPL23", "RPL24",
    ),
    "cytosolic_ribosome_small": (
        "RPS2", "RPS3", "RPS3A", "RPS5", "RPS6", "RPS7", "RPS8", "RPS9", "RPS11", "RPS13",
        "RPS14", "RPS15A", "RPS16", "RPS18", "RPS19",
    ),
    "mediator": (
        "MED1", "MED4", "MED6", "MED7", "MED8", "MED10", "MED11", "MED12", "MED14", "MED17",
        "MED20", "MED21", "MED22", "MED26", "MED30",
    ),
    "rna_polymerase_ii": (
        "POLR2A", "POLR2B", "POLR2C", "POLR2D", "POLR2E", "POLR2F", "POLR2G", "POLR2H",
        "POLR2I", "POLR2J", "POLR2K", "POLR2L",
    ),
    "complex_i": (
        "NDUFS1", "NDUFS2", "NDUFS3", "NDUFS5", "NDUFS7", "NDUFS8", "NDUFV1", "NDUFV2",
        "NDUFA2", "NDUFA4", "NDUFA8", "NDUFA9", "NDUFA10", "NDUFB3", "NDUFB8",
    ),
    "proteasome": (
        "PSMA1", "PSMA2", "PSMA3", "PSMA4", "PSMA5", "PSMA6", "PSMB1", "PSMB2", "PSMB3",
        "PSMB5", "PSMC1", "PSMC2", "PSMC3", "PSMC4", "PSMD1", "PSMD2", "PSMD3", "PSMD9",
        "PSMD11", "PSMD14",
    ),
    "mcm_replication": ("MCM2", "MCM3", "MCM4", "MCM5", "MCM6", "MCM7", "CDC45", "GINS1", "GINS2"),
    "translation_initiation": (
        "EIF2S1", "EIF2S2", "EIF2S3", "EIF2B1", "EIF2B2", "EIF2B3", "EIF2B4", "EIF2B5",
        "EIF3A", "EIF3B", "EIF3C", "EIF3D",
    ),
    "spliceosome_u2": (
        "SF3A1", "SF3A2", "SF3A3", "SF3B1", "SF3B2", "SF3B3", "SF3B4", "SF3B5", "U2AF1",
        "U2AF2", "PHF5A",
    ),
    "transcription_elongation": (
        "CDK9", "CCNT1", "SUPT5H", "SUPT4H1", "SUPT6H", "NELFA", "NELFB", "NELFE", "ELL", "AFF4",
    ),
    "exosome": ("EXOSC2", "EXOSC3", "EXOSC4", "EXOSC5", "EXOSC7", "EXOSC8", "EXOSC9", "EXOSC10", "DIS3"),
    "cohesin_condensin": ("SMC1A", "SMC3", "RAD21", "STAG2", "SMC2", "SMC4", "NCAPD2", "NCAPG", "NCAPH"),
    "er_translocation_upr": ("SEC61A1", "SEC61B", "SEC61G", "SRP54", "SRP68", "SRP72", "HSPA5", "ATF6", "ERN1", "XBP1"),
    "cholesterol_synthesis": (
        "HMGCR", "HMGCS1", "MVK", "MVD", "FDPS", "SQLE", "LSS", "CYP51A1", "DHCR7", "SREBF2", "SCAP",
    ),
    "tp53_pathway": ("TP53", "MDM2", "MDM4", "CDKN1A", "USP7", "PPM1D", "CHEK2", "ATM"),
    "mtor_signalling": ("MTOR", "RPTOR", "RICTOR", "MLST8", "RHEB", "TSC1", "TSC2", "LAMTOR1", "LAMTOR2", "RRAGC"),
    "chaperonin_cct": ("CCT2", "CCT3", "CCT4", "CCT5", "CCT6A", "CCT7", "CCT8", "TCP1"),
    "mito_ribosome": ("MRPL3", "MRPL4", "MRPL12", "MRPL13", "MRPL15", "MRPS5", "MRPS7", "MRPS14", "MRPS18A", "MRPS22"),
    "nuclear_pore": ("NUP93", "NUP98", "NUP107", "NUP133", "NUP153", "NUP155", "NUP160", "NUP205", "NUP214", "SEH1L"),
    "integrator": ("INTS1", "INTS2", "INTS3", "INTS4", "INTS5", "INTS6", "INTS7", "INTS8", "INTS9", "INTS11"),
}

#: Modules whose knock-down changes the mix of cell states, and the state it enriches: slowed
#: growth arrests cells in G1 (ribosome, translation, mTOR); replication defects stall S phase
#: (MCM/GINS); cohesin/condensin and CCT (tubulin folding) loss holds cells in G2/M; RNA-exosome
#: loss promotes erythroid maturation (Mullin et al. 2017; K562 "differentiated" state).
MODULE_STATE_SHIFTS: dict[str, str] = {
    "cytosolic_ribosome_large": "G1",
    "cytosolic_ribosome_small": "G1",
    "translation_initiation": "G1",
    "mtor_signalling": "G1",
    "mcm_replication": "S",
    "cohesin_condensin": "G2M",
    "chaperonin_cct": "G2M",
    "exosome": "differentiated",
}

#: Genes known from Replogle-Nadig to have little transcriptional effect when knocked down;
#: the synthetic screen also includes them as perturbations (null knock-downs).
NULL_GENES: tuple[str, ...] = (
    "OR4F5", "OR2T33", "KRTAP5-1", "LCE1A", "DEFB4A", "TAS2R38", "MT-ND6", "C1orf87",
    "SPATA31A1", "PRAMEF1", "OR10G7", "GOLGA6L2", "FAM90A1", "KRTAP10-4", "LCE3C", "TEX13A",
)


def module_of(gene: str) -> str | None:
    for module, genes in GENE_MODULES.items():
        if gene in genes:
            return module
    return None


def all_module_genes() -> list[str]:
    return [g for genes in GENE_MODULES.values() for g in genes]
